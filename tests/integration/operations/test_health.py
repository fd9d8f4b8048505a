"""`collector health`: a canary through a role's queue names a worker that stopped consuming."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.support.servers import start_worker

pytestmark = pytest.mark.integration


def _health(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", "health", "--role",
                           "node-collector", "--timeout", "5"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_health_names_a_role_whose_worker_stopped_consuming(redis_server, tmp_path):
    broker = f"{redis_server.url}/13"
    worker = start_worker(f"sqlite:///{tmp_path / 'h.sqlite3'}", broker, role="node-collector",
                          extra_args=("--concurrency", "1"), log_dir=str(tmp_path))
    try:
        ok = _health(worker.env)
        assert ok.returncode == 0 and "ok    node-collector" in ok.stdout
        worker.kill(signal.SIGSTOP)  # alive, connected, consuming nothing
        t0 = time.monotonic()
        stalled = _health(worker.env)
        assert stalled.returncode == 1
        assert "FAIL  node-collector" in stalled.stdout
        assert time.monotonic() - t0 < 30
    finally:
        worker.kill(signal.SIGCONT)
        worker.stop()
