"""A scheduler worker (prefork x2, as deployed) holds the messages of jobs one of its batches
is placing (``tasks.taken_along``). Kill -9 its pool processes while their batches wait on a
lock, in the middle of placing: nothing is lost and nothing is placed twice. The killed
batches roll back, their own messages come back (acknowledged late, rejected on a lost
worker), and the messages held for them run once their hold ends (``HOLD_MAX``)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from collector.db import outbox, unit_of_work
from collector.models import Instance, NetworkVifIpLease, OutboxMessage, QueuedJob
from collector.scheduling import capacity
from tasks import relay
from tests.support.servers import start_worker
from workers.demo.world import placement

pytestmark = pytest.mark.integration

HOSTS, SLOTS, INSTANCES = 4, 15, 40


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _waiting_on_locks(conn) -> int:
    return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                             "'Lock' AND datname = current_database()")).scalar_one()


def test_killed_batches_lose_nothing_and_place_nothing_twice(race_db, redis_server, tmp_path):
    with unit_of_work(race_db) as session:
        world = placement.build(session, [placement.HostSize.slots(SLOTS)] * HOSTS,
                                cidr="10.63.0.0/24", mac_vendor=placement.random_local_mac_vendor())
        ids = world.awaiting_placement(session, INSTANCES)
        network_id = world.network.id
        jobs = {i: outbox.jobs.submit(session, "scheduler", "schedule_instance", i,
                                      resource_id=i) for i in ids}
        rows = list(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.task_id.in_(jobs.values()))))
    broker = f"{redis_server.url}/14"
    redis.Redis.from_url(broker).flushdb()
    # The network's row held: every batch stops in its vif phase, after it took its jobs
    # along (and said so) and claimed its hosts.
    engine = create_engine(race_db.replace("postgresql://", "postgresql+psycopg://", 1))
    blocker = engine.connect()
    blocker.execute(text("SELECT id FROM networks WHERE id = :id FOR UPDATE"), {"id": network_id})
    watcher = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    worker = start_worker(race_db, broker, role="scheduler", log_dir=str(tmp_path))
    try:
        relay.publish_rows(relay.publisher(broker), rows, db_url=race_db)
        deadline = time.monotonic() + 30
        while _waiting_on_locks(watcher) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _waiting_on_locks(watcher) >= 1, "no batch reached the network lock"
        time.sleep(0.5)  # the messages of the jobs they took along arrive and are held
        killed = _children(worker.pid)
        assert len(killed) == 2  # the pool's two processes
        for child in killed:
            os.kill(child, signal.SIGKILL)
        time.sleep(0.5)
        blocker.rollback()  # the killed batches' transactions end; the new processes go on

        def finished() -> int:
            with unit_of_work(race_db) as session:
                return session.scalar(select(func.count()).select_from(QueuedJob).where(
                    QueuedJob.task_id.in_(jobs.values()), QueuedJob.state == "finished"))

        deadline = time.monotonic() + 120
        while finished() < INSTANCES and time.monotonic() < deadline:
            time.sleep(0.5)
        with unit_of_work(race_db) as session:
            outcomes = dict(session.execute(select(QueuedJob.finish_status, func.count()).where(
                QueuedJob.task_id.in_(jobs.values())).group_by(QueuedJob.finish_status)).all())
            states = dict(session.execute(select(Instance.state, func.count()).where(
                Instance.uuid.in_([i.split("-", 1)[1] for i in ids])).group_by(
                Instance.state)).all())
            leases = session.execute(select(func.count(), func.count(
                NetworkVifIpLease.ipv4.distinct()))).one()
            assert outcomes == {"success": INSTANCES}, outcomes
            assert states == {"pending": INSTANCES}, states
            assert leases[0] == leases[1] == INSTANCES  # one address each, none given twice
            assert capacity.reconcile(session) == []  # host counters equal their allocations
            boots = session.scalar(select(func.count()).select_from(QueuedJob).where(
                QueuedJob.job_name == "run_local_store"))
            assert boots == INSTANCES  # one boot job per instance, none from a killed batch
        assert "SIGKILL" in worker.log_text()  # the pool saw its processes killed
    finally:
        worker.stop()
        blocker.close()
        watcher.close()
        engine.dispose()
