"""A job is delivered when its agent takes it, not when Redis accepts it.

A job message Redis acknowledged and then lost (an append-only file not yet written, a
failover to a replica that never got it, a consumer killed between kombu's BRPOP and its
unacknowledged record) is simulated by deleting the node's queue after the relay published
it. The job, still ``pending`` past its take deadline, is sent again under its id and runs
once; a copy of a job already run is not run again.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from tests.support.checks import wait_for
from tests.support.servers import start_agent, start_worker
from workers.agent.client import Collector

pytestmark = pytest.mark.integration

REDIS_DB = 12
ENV = {"COLLECTOR_JOB_TAKE_DEADLINE": "2", "COLLECTOR_OUTBOX_SWEEP_AFTER": "1"}


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"e2e_{new_uuid()}")
    upgrade(db_url)
    broker = f"{redis_server.url}/{REDIS_DB}"
    worker = start_worker(db_url, broker, extra_args=("--concurrency", "4"), env=ENV)
    client = Collector(broker, timeout=30)
    yield {"db_url": db_url, "broker": broker, "client": client, "worker": worker,
           "redis": redis.Redis.from_url(broker)}
    client.close()
    worker.stop()


def _job(db_url: str, job_id: str) -> QueuedJob:
    with unit_of_work(db_url) as session:
        return QueuedJob.by_cuuid(session, job_id)


def _sent(db_url: str, job_id: str) -> int:
    with unit_of_work(db_url) as session:
        return session.query(OutboxMessage).filter(OutboxMessage.task_id == job_id,
                                                   OutboxMessage.sent_at.is_not(None)).count()


def _runs(conn: redis.Redis, node: str, job_id: str) -> list[str]:
    return [e["phase"] for e in (json.loads(x) for x in conn.lrange(f"agent-log:{node}", 0, -1))
            if e["job_id"] == job_id and e["phase"] == "started"]


def test_a_job_message_redis_lost_is_sent_again_and_runs_once(cluster):
    node = f"hva.v{new_uuid()}"
    conn, queue, db_url = cluster["redis"], f"hva-handle.{node}", cluster["db_url"]
    cluster["client"].call("node-collector", "notify", node, "boot")  # the node is online
    job_id = cluster["client"].jobs.submit(queue, "reboot", "i-abc12345")
    wait_for(lambda: conn.llen(queue) == 1, timeout=10, what="the job on its queue")
    conn.delete(queue)  # acknowledged by Redis, then lost
    wait_for(lambda: _sent(db_url, job_id) >= 2, timeout=15, what="the job sent again")
    assert _job(db_url, job_id).redeliveries >= 1 and _job(db_url, job_id).state == "pending"
    agent = start_agent(node, cluster["broker"], env={**cluster["worker"].env, **ENV})
    try:
        wait_for(lambda: _job(db_url, job_id).state == "finished", timeout=30,
                 what="the job finished")
        job = _job(db_url, job_id)
        assert job.finish_status == "success" and job.delivery_count == 1
        # Copies sent while no agent took it are dropped by the ledger: one run in all.
        wait_for(lambda: conn.llen(queue) == 0, timeout=10, what="every copy taken")
        time.sleep(1)
        assert _runs(conn, node, job_id) == ["started"]
        assert _job(db_url, job_id).finish_status == "success"
    finally:
        agent.stop()


def test_a_job_taken_in_time_is_never_sent_again(cluster):
    node = f"hva.t{new_uuid()}"
    agent = start_agent(node, cluster["broker"], env={**cluster["worker"].env, **ENV})
    try:
        job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
        wait_for(lambda: _job(cluster["db_url"], job_id).state == "finished", timeout=30,
                 what="the job finished")
        time.sleep(3)  # past its take deadline
        assert _sent(cluster["db_url"], job_id) == 1
        assert _job(cluster["db_url"], job_id).redeliveries == 0
    finally:
        agent.stop()
