"""One beat per installation: a second beat waits on the lock in Redis and takes over
when the first dies, and periodic tasks keep their rate throughout; beat rides out Redis
restarts (tasks.beat_scheduler) and exits non-zero when an error stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis

from tests.support.servers import RedisServer, WorkerProcess

pytestmark = pytest.mark.integration

REDIS_DB = 9
LOCK_KEY = "collector:beat:lock"
SWEEP = "maintenance.sweep_outbox"  # every second with COLLECTOR_OUTBOX_SWEEP_AFTER=1


def _beat(redis_server, tmp_path, name: str) -> WorkerProcess:
    return WorkerProcess(
        f"sqlite:///{tmp_path / 'unused.sqlite3'}", f"{redis_server.url}/{REDIS_DB}",
        role=name, log_dir=str(tmp_path), argv=["-m", "workers.cli", "beat"],
        env={"COLLECTOR_BEAT_LOCK_TIMEOUT": "6", "COLLECTOR_OUTBOX_SWEEP_AFTER": "1",
             "COLLECTOR_DATA_DIR": str(tmp_path / name)})


def _sent(conn: redis.Redis) -> int:
    """How many outbox sweeps the beats have sent so far (no worker consumes them)."""
    return sum(json.loads(raw)["headers"]["task"] == SWEEP
               for raw in conn.lrange("maintenance", 0, -1))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _rate(conn: redis.Redis, seconds: float) -> float:
    before, t0 = _sent(conn), time.monotonic()
    time.sleep(seconds)  # a measured window, not a wait for an event
    return (_sent(conn) - before) / (time.monotonic() - t0)


def test_a_second_beat_stays_idle_then_takes_over_when_the_first_dies(redis_server, tmp_path):
    conn = redis.Redis.from_url(f"{redis_server.url}/{REDIS_DB}")
    conn.flushdb()
    first = _beat(redis_server, tmp_path, "beat-1")
    second = None
    try:
        _wait_for(lambda: conn.exists(LOCK_KEY) and _sent(conn) >= 2, 30,
                  "the first beat never took the lock and sent its periodic tasks")
        second = _beat(redis_server, tmp_path, "beat-2")
        time.sleep(2)  # let the second beat start and reach the lock
        assert second.process.poll() is None, "the second beat exited instead of waiting"
        assert _rate(conn, 6) == pytest.approx(1.0, abs=0.4), "two beats sent the tasks"

        first.kill()  # SIGKILL: no chance to release the lock
        taken_over_by = time.monotonic() + 6 + 10  # lock timeout + the waiter's polling
        start = _sent(conn)
        _wait_for(lambda: _sent(conn) > start + 2, taken_over_by - time.monotonic(),
                  "the second beat did not take over after the first died")
        assert _rate(conn, 6) == pytest.approx(1.0, abs=0.4), "the rate changed after takeover"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_two_beats_through_redis_restarts_that_lose_everything_schedule_once(tmp_path):
    """Redis restarted with nothing kept (the lock and the schedule gone): beat survives,
    one of the two beats takes the lock again and writes the schedule back, and the rate is
    one beat's, never two."""
    with RedisServer() as server:
        conn = redis.Redis.from_url(f"{server.url}/{REDIS_DB}")
        beats = [_beat(server, tmp_path, "beat-a")]
        try:
            _wait_for(lambda: _sent(conn) >= 2, 30, "the first beat sent nothing")
            beats.append(_beat(server, tmp_path, "beat-b").wait_ready(ready_text="beat: Starting"))
            time.sleep(1)  # the second beat waits on the lock
            for i in range(2):
                server.restart()  # down for as long as a stop and a start take; nothing kept
                _wait_for(lambda: _sent(conn) >= 2, 20,
                          f"no beat scheduled after restart {i + 1}")
                for b in beats:
                    assert b.process.poll() is None, \
                        f"{b.role} exited after restart {i + 1}:\n{b.log_text()[-3000:]}"
                assert _rate(conn, 6) == pytest.approx(1.0, abs=0.4), \
                    f"not one beat's rate after restart {i + 1}"
            assert "beat raised exception" not in "".join(b.log_text() for b in beats)
        finally:
            for b in beats:
                b.stop()


FAILING_BEAT = """
import sys
from tasks.beat_scheduler import CollectorScheduler

def tick(self, *args, **kwargs):
    raise ValueError("injected scheduler failure")

CollectorScheduler.tick = tick
from workers.cli.main import main
main(["beat"])
"""


def test_beat_stopped_by_an_error_exits_non_zero(redis_server, tmp_path):
    """`collector up` restarts a process that exits; a supervisor restarting on failure only
    must see one too."""
    env = {**os.environ, "COLLECTOR_BROKER_URL": f"{redis_server.url}/{REDIS_DB + 1}",
           "COLLECTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite3'}",
           "COLLECTOR_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", FAILING_BEAT], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "injected scheduler failure" in done.stdout + done.stderr
    assert done.returncode != 0
