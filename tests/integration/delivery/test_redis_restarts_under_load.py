"""Redis killed (SIGKILL) and started again three times under load loses no job, and beat
keeps scheduling.

One Redis with an append-only file (what it acknowledged survives the kill), PostgreSQL,
a worker of every role, beat, 3 callers calling ``jobqueue-proxy.push_job`` and
``hva-collector.get_instance``. After the restarts: beat and the worker still run, beat
scheduled maintenance after the last restart and the worker ran it, no outbox row is left
unsent, and every job the ledger holds is on its node queue in Redis (no agent consumes
them). Before: beat died at the first restart (redbeat's lock renewal had no retry), and
rows a relay could not publish during an outage waited for beat's sweep forever.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest
import redis
from redbeat.decoder import RedBeatJSONDecoder
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from tests.support.servers import RedisServer, start_beat, start_worker
from workers.agent.client import Collector, RpcError

pytestmark = pytest.mark.integration

RESTARTS = 3
DOWN = 2.0  # seconds Redis stays dead each time
RECOVERY = 30.0  # seconds within which calls must be answered again
SETTLE = 30.0  # seconds after the last restart by which every row must be sent
SWEEP_ENTRY = "collector:beat:outbox-sweep"  # redbeat's key of beat's outbox-sweep entry
SWEEP_DONE = "maintenance.sweep_outbox["  # the worker's log line of a run of it
QUEUES = [f"hva-handle.hva.load{k}" for k in range(3)]


def _last_run(conn: redis.Redis) -> datetime | None:
    raw = conn.hget(SWEEP_ENTRY, "meta")
    return json.loads(raw, cls=RedBeatJSONDecoder).get("last_run_at") if raw else None


def _sweeps_run(log: str) -> int:
    return sum(SWEEP_DONE in line and "succeeded" in line for line in log.splitlines())


def _queued(conn: redis.Redis, queue: str) -> set[str]:
    return {json.loads(raw)["headers"]["id"] for raw in conn.lrange(queue, 0, -1)}


def test_redis_killed_three_times_under_load_loses_no_job_and_beat_keeps_going(
        postgres_server, tmp_path):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"kills_{new_uuid()}")
    upgrade(db_url)
    with RedisServer(appendonly=True) as server:
        broker = f"{server.url}/0"
        env = {"COLLECTOR_BEAT_LOCK_TIMEOUT": "6", "COLLECTOR_DATA_DIR": str(tmp_path)}
        worker = start_worker(db_url, broker, extra_args=("--concurrency", "6"), env=env)
        beat = start_beat(db_url, broker, str(tmp_path / "beat"), env=env)
        try:
            _run(server, broker, db_url, worker, beat)
        finally:
            beat.stop()
            worker.stop()


def _run(server: RedisServer, broker: str, db_url: str, worker, beat) -> None:  # noqa: ANN001
    answered: dict[str, int] = defaultdict(int)
    stop = threading.Event()

    def load(k: int) -> None:
        with Collector(broker, timeout=3) as client:
            pusher, reader = client.rpc("jobqueue-proxy"), client.rpc("hva-collector")
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    pusher.push_job(QUEUES[k], "reboot", [], f"load-{k}-{n}")
                    answered["push_job"] += 1
                    reader.get_instance("i-00000000")
                except RpcError as exc:
                    if exc.error_type == "UnknownInstanceID":  # a read answered
                        answered["get_instance"] += 1
                    else:
                        time.sleep(0.1)  # the broker is down on purpose
                except Exception:  # noqa: BLE001 - the broker is down on purpose
                    time.sleep(0.1)

    callers = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in callers:
        t.start()
    try:
        for i in range(RESTARTS):
            time.sleep(3)  # load
            server.kill()
            time.sleep(DOWN)
            server.start()
            restarted = time.monotonic()
            with Collector(broker, timeout=2) as probe:
                while True:
                    for name, process in (("worker", worker), ("beat", beat)):
                        assert process.process.poll() is None, \
                            f"{name} exited ({process.process.returncode}) after kill {i + 1}:" \
                            f"\n{process.log_text()[-3000:]}"
                    try:
                        probe.call("jobqueue-proxy", "push_job", QUEUES[0], "reboot", [],
                                   f"probe-{i}", timeout=2)
                        break
                    except Exception:  # noqa: BLE001 - not back yet
                        assert time.monotonic() - restarted < RECOVERY, \
                            f"no answer {RECOVERY}s after kill {i + 1}"
                        time.sleep(0.2)
        last_restart = datetime.now(UTC)
        sweeps_before = _sweeps_run(worker.log_text())
        time.sleep(2)  # load after the last restart too
    finally:
        stop.set()
        for t in callers:
            t.join(15)
    print(f"answered: {dict(answered)}")
    assert answered["push_job"] > 30 and answered["get_instance"] > 30

    conn = redis.Redis.from_url(broker)
    deadline = time.monotonic() + SETTLE
    while True:
        with unit_of_work(db_url, readonly=True) as session:
            unsent = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.sent_at.is_(None)))
            jobs = session.execute(select(QueuedJob.task_id, QueuedJob.queue_name)).all()
            swept = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.last_error.is_not(None)))
        by_queue: dict[str, set[str]] = defaultdict(set)
        for task_id, queue in jobs:
            by_queue[queue].add(task_id)
        missing = {q: ids - _queued(conn, q) for q, ids in by_queue.items()}
        lost = sum(len(ids) for ids in missing.values())
        if (unsent == 0 and lost == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"{len(jobs)} jobs; {swept} outbox row(s) met the outage in a relay and were swept")
    assert len(jobs) >= answered["push_job"]
    assert unsent == 0, f"{unsent} outbox row(s) unsent {SETTLE:g}s after the last restart"
    assert lost == 0, f"{lost} of {len(jobs)} ledger jobs not on their node queue: {missing}"

    # Beat still runs and schedules: it sent the outbox sweep after the last restart, and
    # the worker ran it.
    deadline = time.monotonic() + 15
    while not ((_last_run(conn) or last_restart) > last_restart
               and _sweeps_run(worker.log_text()) > sweeps_before):
        assert time.monotonic() < deadline, \
            f"beat scheduled nothing after the last restart:\n{beat.log_text()[-3000:]}"
        time.sleep(0.3)
    assert beat.process.poll() is None and worker.process.poll() is None
    assert "beat raised exception" not in beat.log_text()
    assert "Unrecoverable error" not in worker.log_text()
