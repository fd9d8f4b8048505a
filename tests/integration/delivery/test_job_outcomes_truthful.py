"""The ledger's word is the truth: a job is ``success`` only when its work was done, and an
outcome whose callback was lost still reaches the ledger. Real worker, real agents (the
library's reference agent, and one on plain Celery), real Redis, SQLite and PostgreSQL.

- A second copy of a job (the outbox sweep sends a row again when the relay published it
  but failed to stamp it) reaching the agent that runs the job is dropped with no result
  and no ``link`` callback: the ledger stays ``running`` and the result backend stores
  nothing until the real run finishes. A copy arriving after the job finished is dropped
  the same way and leaves the real result in place.
- A job whose ``link`` / ``link_error`` callbacks never arrive (the message sent without
  them, as when the broker lost them) is finished by the maintenance pass
  (``maintenance.redrive_placements``) from the job's own outcome in the result backend.
"""

from __future__ import annotations

import json
import time

import pytest
import redis
from sqlalchemy import select, update

from collector import wire
from collector.db import outbox, unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from collector.timeutil import utcnow
from tasks import relay
from tests.support.checks import wait_for
from tests.support.servers import WorkerProcess, node_env, start_agent, start_worker
from workers.agent.client import Collector

pytestmark = pytest.mark.integration

REDIS_DB = {"sqlite": 14, "postgresql": 15}
ENV = {"COLLECTOR_REDRIVE_AFTER": "1"}  # a callback this late counts as lost


@pytest.fixture(scope="module")
def cluster(db_url, redis_server):
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    broker = f"{redis_server.url}/{REDIS_DB[backend]}"
    redis.Redis.from_url(broker).flushdb()
    worker = start_worker(db_url, broker, extra_args=("--concurrency", "8"), env=ENV)
    client = Collector(broker, timeout=30)
    yield {"worker": worker, "client": client, "broker": broker, "db_url": db_url,
           "redis": redis.Redis.from_url(broker)}
    client.close()
    worker.stop()


@pytest.fixture()
def agent(cluster):
    """A reference agent of a node of its own, stopped when the test ends."""
    node = f"hva.t{new_uuid()}"
    process = start_agent(node, cluster["broker"], env=cluster["worker"].env)
    yield node, process
    process.stop()


def job_row(c: dict, job_id: str) -> QueuedJob:
    with unit_of_work(c["db_url"], readonly=True) as session:
        return QueuedJob.by_cuuid(session, job_id)


def stored(c: dict, job_id: str) -> dict:
    """What the result backend holds for the job."""
    return c["client"].app.backend.get_task_meta(job_id)


def phases(c: dict, node: str, job_id: str) -> list[str]:
    return [e["phase"] for e in map(json.loads, c["redis"].lrange(f"agent-log:{node}", 0, -1))
            if e["job_id"] == job_id]


def send_again(c: dict, job_id: str) -> None:
    """Publish the job's outbox row once more, exactly as the outbox sweep does."""
    with unit_of_work(c["db_url"], readonly=True) as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.task_id == job_id)
                              .order_by(OutboxMessage.id)).first()
        session.expunge(row)
    relay.publish_one(relay.publisher(c["broker"]), row, 3600)


def test_a_second_copy_of_a_running_job_leaves_the_ledger_running_until_it_finishes(
        cluster, agent):
    c, (node, process) = cluster, agent
    job_id = c["client"].jobs.submit(wire.node_queue(wire.HVA_HANDLE, node), "sleep", 4)
    wait_for(lambda: phases(c, node, job_id) == ["started"], "the job started", 30)
    send_again(c, job_id)
    wait_for(lambda: f"{job_id} (sleep) already runs here: copy dropped" in process.log_text(),
             "the copy dropped", 30)
    time.sleep(0.5)  # a link callback of the copy, had there been one, would be handled now
    job = job_row(c, job_id)
    assert (job.state, job.finish_status, job.delivery_count) == ("running", None, 1)
    assert stored(c, job_id)["status"] == "PENDING"  # the copy stored no result

    job = wait_for(lambda: (j := job_row(c, job_id)).state == "finished" and j,
                   "the real run finished", 30)
    assert job.finish_status == "success" and phases(c, node, job_id) == ["started", "finished"]
    wait_for(lambda: stored(c, job_id)["status"] == "SUCCESS", "the real result", 30)
    assert stored(c, job_id)["result"] == {"slept": 4}

    # A copy arriving once the job finished: not run, the real result left as it was.
    send_again(c, job_id)
    wait_for(lambda: f"skipping job {job_id} (sleep): already finished (success)"
             in process.log_text(), "the late copy skipped", 30)
    assert stored(c, job_id)["result"] == {"slept": 4}
    assert phases(c, node, job_id) == ["started", "finished"]


def test_outcomes_whose_callbacks_were_lost_are_finished_by_the_maintenance_pass(cluster):
    c = cluster
    node = f"hva.plain{new_uuid()}"
    plain = WorkerProcess("", c["broker"], role=f"plain-{node}",  # one that never reports
                          env=node_env(node, {**c["worker"].env, "PLAIN_AGENT_LEDGER": "0"}),
                          argv=["-m", "tests.support.plain_agent", node]).wait_ready()
    try:
        queue = wire.node_queue(wire.HVA_HANDLE, node)
        with unit_of_work(c["db_url"]) as session:  # ledger rows; their messages: below
            ok = outbox.jobs.submit(session, queue, wire.HvaJob.REBOOT, "i-abc12345")
            bad = outbox.jobs.submit(session, queue, wire.HvaJob.POWEROFF, "i-abc12345")
            session.flush()  # their outbox rows count as sent: no sweep sends them
            session.execute(update(OutboxMessage).where(OutboxMessage.task_id.in_([ok, bad]))
                            .values(sent_at=utcnow()))
        for job_id, name in ((ok, wire.HvaJob.REBOOT), (bad, wire.HvaJob.POWEROFF)):
            # Sent without the link / link_error callbacks: as if they were lost.
            c["client"].app.send_task(wire.task(wire.HVA_HANDLE, name), args=["i-abc12345"],
                                      queue=queue, task_id=job_id)
        for job_id in (ok, bad):
            wait_for(lambda j=job_id: stored(c, j)["status"] in ("SUCCESS", "FAILURE"),
                     f"{job_id} ran", 30)
        time.sleep(1.5)  # COLLECTOR_REDRIVE_AFTER: the callbacks are late enough
        assert job_row(c, ok).state == job_row(c, bad).state == "pending"  # nobody told it
        answer = c["client"].app.send_task(wire.Maintenance.REDRIVE_PLACEMENTS,
                                           queue=wire.MAINTENANCE).get(timeout=30)
        assert ok in answer["succeeded"] and bad in answer["failed"]
        done, failed = job_row(c, ok), job_row(c, bad)
        assert (done.state, done.finish_status) == ("finished", "success")
        assert (failed.state, failed.finish_status) == ("finished", "fail")
        assert failed.finish_message == {"error_type": "RuntimeError",
                                         "message": "cannot power off i-abc12345"}
        # Twice is harmless: nothing left to finish.
        again = c["client"].app.send_task(wire.Maintenance.REDRIVE_PLACEMENTS,
                                          queue=wire.MAINTENANCE).get(timeout=30)
        assert ok not in again["succeeded"] and bad not in again["failed"]
    finally:
        plain.stop()
