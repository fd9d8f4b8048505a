"""A job of the Collector's own job endpoints (the scheduler's) ends its ledger row in the
transaction of its work: ``success`` with the placement, ``fail`` with the reason of a
refused one, nothing at all when the work rolled back. The relay sends such a job without
the success callback (nothing is left for it to do), and keeps the failure one for a job
that never committed. Tasks run eagerly on a committed SQLite database."""

from __future__ import annotations

import pytest
from celery import Celery

from collector import wire
from collector.db import outbox, unit_of_work
from collector.errors import InsufficientCapacity, UnknownInstanceID
from collector.models import Instance, OutboxMessage, QueuedJob
from tasks import relay, taken_along
from tasks.endpoints import scheduler
from tests.support.scheduling import make_world, scheduling_instance

pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")


@pytest.fixture()
def db(committed_db):
    return committed_db


def submitted(url: str, cpu: int = 1, instance_id: str | None = None) -> tuple[str, str]:
    """An instance waiting for placement and its ``schedule_instance`` job in the ledger."""
    with unit_of_work(url) as session:
        if instance_id is None:
            instance_id = scheduling_instance(session, make_world(session), cpu=cpu).canonical_uuid
        job_id = outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_INSTANCE,
                                    instance_id, resource_id=instance_id)
    return instance_id, job_id


def run(instance_id: str, job_id: str):
    task = scheduler.endpoint.tasks[wire.SchedulerJob.SCHEDULE_INSTANCE]
    return task.apply(args=[instance_id], task_id=job_id)


def ledger(url: str, job_id: str) -> tuple[str, str | None, dict | None]:
    with unit_of_work(url) as session:
        job = QueuedJob.by_cuuid(session, job_id)
        return job.state, job.finish_status, job.finish_message


def test_a_placement_job_is_finished_success_in_the_placement_transaction(db):
    instance_id, job_id = submitted(db)
    assert run(instance_id, job_id).get()["outcome"] == "placed"
    assert ledger(db, job_id)[:2] == ("finished", "success")


def test_a_refused_placement_finishes_its_job_fail_with_the_reason(db):
    instance_id, job_id = submitted(db, cpu=99)
    result = run(instance_id, job_id)
    assert isinstance(result.result, InsufficientCapacity)
    state, status, message = ledger(db, job_id)
    assert (state, status, message["error_type"]) == ("finished", "fail", "InsufficientCapacity")
    assert message["message"] == str(result.result)


def test_a_repeated_job_leaves_its_finished_row_as_it_was(db):
    instance_id, job_id = submitted(db)
    run(instance_id, job_id).get()
    first = ledger(db, job_id)
    assert run(instance_id, job_id).get()["outcome"] == "noop"
    assert ledger(db, job_id) == first


def test_work_that_rolled_back_leaves_the_job_to_its_failure_callback(db):
    _, job_id = submitted(db)
    result = run("i-nosuch00", job_id)  # an unknown instance: nothing is written
    assert isinstance(result.result, UnknownInstanceID)
    assert ledger(db, job_id)[:2] == ("pending", None)


def test_the_relay_sends_own_jobs_with_the_failure_callback_only(db):
    sent: list[dict] = []
    app = Celery("relay-under-test", set_as_current=False)
    app.send_task = lambda name, **options: sent.append({"name": name, **options})
    with unit_of_work(db) as session:
        own = outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_INSTANCE,
                                 "i-whatever0")
        node = outbox.jobs.submit(session, "hva-handle.demo1", "run_local_store", "i-whatever0")
        rows = {row.task_id: row for row in session.query(OutboxMessage).filter(
            OutboxMessage.task_id.in_([own, node]))}
        for task_id in (own, node):
            relay.publish_one(app, rows[task_id], job_expires=60)
    by_id = {message["task_id"]: message for message in sent}
    assert "link" not in by_id[own] and by_id[own]["link_error"]["task"] == relay.LEDGER_FAILED
    assert by_id[node]["link"]["task"] == relay.LEDGER_SUCCEEDED
    assert by_id[node]["link_error"]["task"] == relay.LEDGER_FAILED


def test_a_placement_job_places_the_placements_waiting_with_it_each_with_its_outcome(db):
    with unit_of_work(db) as session:
        world = make_world(session)
        fits = [scheduling_instance(session, world).canonical_uuid for _ in range(3)]
        too_big = scheduling_instance(session, world, cpu=99).canonical_uuid
    jobs = {instance_id: submitted(db, instance_id=instance_id)[1]
            for instance_id in [*fits, too_big]}
    first = fits[0]
    assert run(first, jobs[first]).get()["outcome"] == "placed"
    for instance_id in fits:  # taken along: placed and finished in the same transaction
        assert ledger(db, jobs[instance_id])[:2] == ("finished", "success")
        with unit_of_work(db) as session:
            assert Instance.by_cuuid(session, instance_id).state == "pending"
    state, status, message = ledger(db, jobs[too_big])
    assert (state, status, message["error_type"]) == ("finished", "fail", "InsufficientCapacity")
    # Their own messages will be answered at receipt (a worker's strategy takes the answer
    # kept after the commit): what each keeps is what running the message answers.
    kept = {instance_id: taken_along.take(jobs[instance_id]) for instance_id in fits[1:]}
    kept[too_big] = taken_along.take(jobs[too_big])
    assert taken_along.take(jobs[first]) is None  # the job that ran answers for itself
    # Their own messages arrive later and find their jobs finished: nothing happens.
    for instance_id, answer in kept.items():
        assert run(instance_id, jobs[instance_id]).get() == answer
    before = ledger(db, jobs[fits[1]])
    answer = run(fits[1], jobs[fits[1]]).get()
    assert (answer["outcome"], answer["finish_status"]) == ("noop", "success")
    assert ledger(db, jobs[fits[1]]) == before
    assert run(too_big, jobs[too_big]).get()["finish_status"] == "fail"  # no error raised again
