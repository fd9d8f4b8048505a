"""Secrets stay secret: arguments such as ``encrypted_password`` are masked wherever tasks are
watched (task events, Flower, worker logs, messages the relay publishes), and the embedded
Redis requires a password kept in the data directory.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from celery import Celery

from collector.db import unit_of_work
from collector.redaction import MASK
from collector.services.jobs import push as job_push
from tests.support.rpc import signed_celery
from tests.support.servers import RedisServer, start_worker
from workers import broker_acl
from workers.agent.client import Collector, RpcError, shown_args
from workers.embedded_redis import EmbeddedRedis, ensure_broker, free_port

pytestmark = pytest.mark.integration

SECRET = "c2VjcmV0LXBhc3N3b3JkLTQy"  # what an agent would send as the encrypted password
CREDENTIALS = "ops:s3cret"


@pytest.fixture(scope="module")
def watched(db_url):
    """A worker on a Redis of its own, and every task event it sends, as a list."""
    with RedisServer() as server:
        broker = f"{server.url}/0"
        worker = start_worker(db_url, broker, role="all", extra_args=("--concurrency", "2"))
        events: list[dict] = []
        app = Celery(broker=broker, set_as_current=False)
        conn = app.connection()
        receiver = app.events.Receiver(conn, handlers={"*": events.append})
        thread = threading.Thread(target=receiver.capture, daemon=True,
                                  kwargs={"limit": None, "timeout": None, "wakeup": True})
        thread.start()
        app.control.enable_events()  # as Flower does: the workers start without task events
        time.sleep(1)  # the receiver listens before the first task
        yield {"worker": worker, "broker": broker, "events": events, "db_url": db_url}
        receiver.should_stop = True
        thread.join(5)
        conn.release()
        worker.stop()


def _events_of(watched: dict, task_id: str, kind: str = "task-received") -> list[dict]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [e for e in list(watched["events"])
                 if e.get("uuid") == task_id and e.get("type") == kind]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event for {task_id}")


def _report() -> list:
    return ["i-nothere0", {"encrypted_password": SECRET, "state": "running"}]


def test_the_client_sends_masked_argument_reprs(watched):
    with Collector(watched["broker"], timeout=20) as client:
        result = client.app.send_task("hva-collector.update_instance", args=_report(),
                                      queue="hva-collector", **shown_args(_report()))
        with pytest.raises(Exception):  # noqa: B017 - UnknownInstanceID, rebuilt
            result.get(timeout=20)
        (event,) = _events_of(watched, result.id)
        assert SECRET not in json.dumps(event) and MASK in event["args"]
        with pytest.raises(RpcError) as info:
            client.rpc("hva-collector").update_instance(*_report())
        assert info.value.error_type == "UnknownInstanceID"
        assert SECRET not in info.value.message


def test_the_worker_masks_what_a_plain_celery_client_sent_in_clear(watched):
    app = signed_celery(watched["broker"], watched["broker"], accept_content=["json"],
                        result_accept_content=["json"])
    result = app.send_task("hva-collector.update_instance", args=_report(),
                           queue="hva-collector", argsrepr=repr(_report()))  # in clear
    with pytest.raises(Exception):  # noqa: B017
        result.get(timeout=20)
    (event,) = _events_of(watched, result.id)
    assert SECRET not in json.dumps(event) and MASK in event["args"]
    # A wrong type under a sensitive key is refused without echoing the value either.
    bad = app.send_task("hva-collector.update_instance",
                        args=["i-nothere0", {"encrypted_password": [SECRET]}],
                        queue="hva-collector")
    with pytest.raises(Exception) as info:  # noqa: B017
        bad.get(timeout=20)
    assert SECRET not in str(info.value)
    assert SECRET not in json.dumps(_events_of(watched, bad.id, "task-failed"))
    assert SECRET not in watched["worker"].log_text()


def test_jobs_the_relay_publishes_carry_masked_reprs(watched):
    node_queue = "hva-handle.hva.secretive"
    with unit_of_work(watched["db_url"]) as session:
        job_id = job_push.push_job(session, node_queue, "run_local_store",
                                   [{"encrypted_password": SECRET}, "i-abc12345"])
    from tasks import relay

    relay.sweep(relay.publisher(watched["broker"]), older_than=0, db_url=watched["db_url"])
    conn = redis.Redis.from_url(watched["broker"])
    (raw,) = [m for m in conn.lrange(node_queue, 0, -1)
              if json.loads(m)["headers"]["id"] == job_id]
    headers = json.loads(raw)["headers"]
    assert SECRET not in headers["argsrepr"] and MASK in headers["argsrepr"]


def _get(url: str, credentials: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_flower_never_shows_a_secret_argument(watched, tmp_path):
    port = free_port()
    env = {**watched["worker"].env, "COLLECTOR_FLOWER_BASIC_AUTH": CREDENTIALS,
           "COLLECTOR_DATA_DIR": str(tmp_path)}
    flower = subprocess.Popen([sys.executable, "-m", "workers.cli", "flower", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(base + "/healthcheck", CREDENTIALS)
                break
            except OSError:
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.3)
        time.sleep(1)  # Flower's event consumer is connected
        plain = signed_celery(watched["broker"], watched["broker"], accept_content=["json"],
                              result_accept_content=["json"])
        result = plain.send_task("hva-collector.update_instance", args=_report(),
                                 queue="hva-collector", argsrepr=repr(_report()))
        with pytest.raises(Exception):  # noqa: B017
            result.get(timeout=20)
        deadline = time.monotonic() + 15
        while True:
            status, body = _get(f"{base}/api/task/info/{result.id}", CREDENTIALS)
            if status == 200 and b"args" in body:
                break
            assert time.monotonic() < deadline, f"flower does not know the task ({status})"
            time.sleep(0.3)
        assert SECRET.encode() not in body and MASK.encode() in body
        status, listing = _get(f"{base}/api/tasks", CREDENTIALS)
        assert status == 200 and SECRET.encode() not in listing
    finally:
        flower.terminate()
        flower.wait(10)


def test_the_embedded_redis_requires_its_generated_password(tmp_path, monkeypatch):
    for name in ("COLLECTOR_BROKER_URL", "COLLECTOR_RESULT_BACKEND",
                 "COLLECTOR_OPERATOR_BROKER_URL"):
        monkeypatch.setenv(name, "")  # recorded, so what ensure_broker exports is undone
        monkeypatch.delenv(name)
    embedded = ensure_broker(tmp_path)
    try:
        password = (tmp_path / "redis" / "password").read_text().strip()
        assert len(password) >= 24
        for name in ("password", "operator-password", "redis.conf", "users.acl"):
            mode = stat.S_IMODE(os.stat(tmp_path / "redis" / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
        assert password not in (tmp_path / "redis" / "users.acl").read_text()  # hashed
        assert "collector:" in os.environ["COLLECTOR_BROKER_URL"]
        operator = redis.Redis.from_url(os.environ["COLLECTOR_OPERATOR_BROKER_URL"])
        assert operator.acl_whoami() == "operator"
        # A node's user made at run time is kept in the ACL file, across a restart.
        node_password = secrets.token_urlsafe(16)
        broker_acl.set_user(operator, "node.hva.kept", broker_acl.node_rules(
            "hva.kept", node_password, broker_acl.has_selectors(operator)))
        assert f":{password}@" in os.environ["COLLECTOR_BROKER_URL"]
        assert f":{password}@" in os.environ["COLLECTOR_RESULT_BACKEND"]
        with open(f"/proc/{embedded.process.pid}/cmdline", "rb") as cmdline:
            assert password.encode() not in cmdline.read()  # not visible in ps
        anonymous = redis.Redis(port=embedded.port, socket_timeout=2)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=embedded.port, password="guess", socket_timeout=2).ping()
        assert redis.Redis.from_url(os.environ["COLLECTOR_BROKER_URL"]).ping()
        port = embedded.port
        embedded.stop()
        again = EmbeddedRedis(tmp_path, port=port).start()  # the same password, kept
        embedded = again
        assert again.password == password
        assert redis.Redis.from_url(again.url).ping()
        node = redis.Redis(port=port, username="node.hva.kept", password=node_password)
        node.lpush("hva-handle.hva.kept", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            node.lpush("hva-handle.hva.other", "x")
    finally:
        embedded.stop()


def test_a_worker_and_a_client_work_through_the_embedded_redis(tmp_path, db_url):
    embedded = EmbeddedRedis(tmp_path).start()
    try:
        worker = start_worker(db_url, embedded.url, role="node-collector",
                              env={"COLLECTOR_RESULT_BACKEND": embedded.result_backend_url})
        try:
            with Collector(embedded.url, embedded.result_backend_url, timeout=20) as client:
                assert client.call("node-collector", "ping")["endpoint"] == "node-collector"
            assert embedded.password not in worker.log_text()
        finally:
            worker.stop()
    finally:
        embedded.stop()
