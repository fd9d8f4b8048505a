"""Flower: every path asks for the credentials, Prometheus metrics included; the workers,
which send no task events while nobody watches, send them once Flower runs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from workers.embedded_redis import free_port

pytestmark = pytest.mark.integration

CREDENTIALS = "ops:s3cret"
PATHS = ["/", "/workers", "/tasks", "/api/workers", "/metrics", "/healthcheck"]


def _status(url: str, credentials: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.fixture()
def flower(worker, tmp_path):
    port = free_port()
    env = {**worker.env, "COLLECTOR_FLOWER_BASIC_AUTH": CREDENTIALS,
           "COLLECTOR_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "workers.cli", "flower", "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _status(base + "/healthcheck")
            break
        except OSError:
            assert time.monotonic() < deadline, "flower did not start"
            time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(10)


def test_every_flower_path_refuses_requests_without_credentials(flower):
    for path in PATHS:
        assert _status(flower + path)[0] == 401, path
        assert _status(flower + path, "ops:wrong")[0] == 401, path


def test_prometheus_metrics_answer_with_the_credentials(flower):
    status, body = _status(flower + "/metrics", CREDENTIALS)
    assert status == 200
    assert b"flower_events_total" in body or b"flower_worker_online" in body


def test_flower_sees_the_tasks_although_workers_start_without_task_events(flower,
                                                                          collector_client):
    """Task events cost every task a few publishes: the workers start without them and
    Flower turns them on (its ``enable_events``, every few seconds) while it runs."""
    deadline = time.monotonic() + 40
    seen: set[str] = set()
    while time.monotonic() < deadline:
        collector_client.call("api", "list_instances")
        status, body = _status(flower + "/api/tasks?limit=50", CREDENTIALS)
        assert status == 200
        seen = {task.get("name") for task in json.loads(body or b"{}").values()}
        if "api.list_instances" in seen:
            break
        time.sleep(1)
    assert "api.list_instances" in seen, f"Flower saw only {seen}"
