"""`collector up` keeps an installation running: a process that dies is started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.agent.client import Collector, RpcError

pytestmark = pytest.mark.integration


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _answers(client: Collector) -> bool:
    try:
        return client.call("node-collector", "ping", timeout=3)["endpoint"] == "node-collector"
    except RpcError:
        return False


def test_a_killed_process_is_started_again_and_serves(redis_server, tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("nodes: collector worker --role node-collector --concurrency 1\n")
    broker = f"{redis_server.url}/12"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COLLECTOR_")},
           "COLLECTOR_BROKER_URL": broker, "COLLECTOR_DATA_DIR": str(tmp_path),
           # The installation's signing secret, which this test's client signs with too.
           "COLLECTOR_SIGNING_SECRET": os.environ["COLLECTOR_SIGNING_SECRET"],
           "COLLECTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'up.sqlite3'}"}
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    up = subprocess.Popen([sys.executable, "-m", "workers.cli", "up", "--procfile",
                           str(procfile)], env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    pid_file = tmp_path / "run" / "nodes.pid"
    client = Collector(broker, timeout=10)
    try:
        first = _wait(lambda: _pid(pid_file), 30, "collector up never started the worker")
        _wait(lambda: _answers(client), 60, "the worker never answered")
        os.killpg(first, signal.SIGKILL)
        second = _wait(lambda: _pid(pid_file) not in (None, first) and _pid(pid_file), 20,
                       "the killed worker was not started again")
        _wait(lambda: _answers(client), 60, "the restarted worker never answered")
        assert up.poll() is None, "collector up exited when one of its processes died"
    finally:
        client.close()
        os.killpg(up.pid, signal.SIGTERM)
        code = up.wait(40)
        log.close()
    assert code == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(second, 0)  # stopped with the installation
