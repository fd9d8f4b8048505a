"""Every worker sweeps the outbox (tasks.worker_sweeper): the loop outlives failing passes,
an idle sweep takes no SQLite write lock, and a row nobody relayed is published by a worker
(not beat) within seconds."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import redis
from sqlalchemy import select

from collector.db import unit_of_work
from collector.models import OutboxMessage
from collector.services.jobs.push import push_job
from tasks import worker_sweeper
from tasks.worker_sweeper import Sweeper
from tests.support.servers import start_worker


def test_a_failing_pass_backs_off_and_the_others_go_on():
    runs: dict[str, int] = {"ok": 0, "broken": 0}

    def ok() -> int:
        runs["ok"] += 1
        return 0

    def broken() -> None:
        runs["broken"] += 1
        raise ConnectionError("Connection refused")

    sweeper = Sweeper(every=0.05, passes=[broken, ok], max_backoff=0.4)
    sweeper.start()
    try:
        time.sleep(1.5)  # a measured window: ~30 periods
        assert sweeper.is_alive(), "the loop died with its pass"
    finally:
        sweeper.stop()
    assert not sweeper.is_alive()
    assert runs["ok"] >= 10  # every period (about 30)
    # 2, 4, 8 periods, then at most 0.4 s apart: far fewer tries than periods
    assert 2 <= runs["broken"] <= 8, runs


def test_a_pass_registered_later_runs_in_the_running_loop():
    passes: list = []
    seen = threading.Event()
    sweeper = Sweeper(every=0.05, passes=passes)
    sweeper.start()
    try:
        passes.append(seen.set)
        assert seen.wait(2), "a pass added to the running loop never ran"
    finally:
        sweeper.stop()


def test_register_pass_keeps_the_outbox_sweep_first_and_each_pass_once(monkeypatch):
    monkeypatch.setattr(worker_sweeper, "PASSES", list(worker_sweeper.PASSES))

    def resend() -> int:
        return 0

    assert worker_sweeper.register_pass(resend) is resend
    worker_sweeper.register_pass(resend)
    assert worker_sweeper.PASSES[0] is worker_sweeper.sweep_outbox
    assert worker_sweeper.PASSES[-1] is resend and worker_sweeper.PASSES.count(resend) == 1


def test_an_idle_sweep_takes_no_sqlite_write_lock(migrated_sqlite, monkeypatch):
    url = migrated_sqlite("idle.sqlite3")
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", url)
    monkeypatch.setenv("COLLECTOR_OUTBOX_SWEEP_AFTER", "1")
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
        t0 = time.monotonic()
        assert worker_sweeper.sweep_outbox() == 0
        assert time.monotonic() - t0 < 1.0, "the idle sweep waited for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _unsent_job(url: str, queue: str) -> str:
    """A job written through the domain in a plain unit of work: nothing relays it."""
    with unit_of_work(url) as session:
        return push_job(session, queue, "reboot", [])


def _sent_at(url: str, task_id: str):  # noqa: ANN202
    with unit_of_work(url, readonly=True) as session:
        return session.scalar(select(OutboxMessage.sent_at).where(
            OutboxMessage.task_id == task_id))


def _queued_ids(conn: redis.Redis, queue: str) -> set[str]:
    return {json.loads(raw)["headers"]["id"] for raw in conn.lrange(queue, 0, -1)}


@pytest.mark.parametrize("role", ["hva-collector"])  # a prefork role: the sweeper is a thread
def test_a_worker_without_beat_publishes_a_row_left_unsent(role, redis_server, migrated_sqlite,
                                                          tmp_path):
    """No beat: the row goes out through the worker's own sweep; with the sweep turned off
    (COLLECTOR_WORKER_SWEEP=0) it stays unsent."""
    url, broker = migrated_sqlite("sweeper.sqlite3"), f"{redis_server.url}/13"
    conn = redis.Redis.from_url(broker)
    conn.flushdb()
    queue = "hva-handle.hva.sweeper"
    env = {"COLLECTOR_DATA_DIR": str(tmp_path), "COLLECTOR_WORKER_SWEEP": "0"}
    off = start_worker(url, broker, role=role, extra_args=("--concurrency", "1"), env=env)
    try:
        left = _unsent_job(url, queue)
        time.sleep(4)  # 4 sweep periods (COLLECTOR_OUTBOX_SWEEP_AFTER=1): nothing may send it
        assert _sent_at(url, left) is None and left not in _queued_ids(conn, queue)
    finally:
        off.stop()

    on = start_worker(url, broker, role=role, extra_args=("--concurrency", "1"),
                      env={**env, "COLLECTOR_WORKER_SWEEP": "1"})
    try:
        deadline = time.monotonic() + 6  # the sweep period, its random start, a slow CI
        while _sent_at(url, left) is None:
            assert time.monotonic() < deadline, \
                f"the worker's sweep did not publish the row; log:\n{on.log_text()[-3000:]}"
            time.sleep(0.2)
        assert left in _queued_ids(conn, queue)
        assert on.process.poll() is None
    finally:
        on.stop()
