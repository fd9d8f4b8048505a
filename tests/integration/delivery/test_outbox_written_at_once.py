"""A job and its message inserted at once (``outbox.jobs.submit(..., at_once=True)``, what a
request queueing its placement does) keep the outbox's promises: written with the
transaction or not at all, relayed only once committed, never when a savepoint that held
them rolled back, and refused like any flushed row when a value does not fit."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import UnitOfWork, outbox
from collector.errors import InvalidArgument
from collector.models import QueuedJob
from collector.models.outbox import OutboxMessage

pytestmark = pytest.mark.integration

QUEUE = "hva-handle.hva-atonce"


def _submit(session, instance: str) -> str:
    return outbox.jobs.submit(session, QUEUE, "run_local_store", instance, resource_id=instance,
                              at_once=True)


def _written(db_url: str, job_ids: list[str]) -> tuple[int, list[tuple[int, str]]]:
    with UnitOfWork(db_url) as uow:
        jobs = uow.session.scalar(select(func.count()).select_from(QueuedJob).where(
            QueuedJob.task_id.in_(job_ids)))
        rows = list(uow.session.execute(select(OutboxMessage.id, OutboxMessage.task_id).where(
            OutboxMessage.task_id.in_(job_ids)).order_by(OutboxMessage.id)))
    return jobs, [tuple(row) for row in rows]


def test_committed_rows_are_relayed_as_written_claimed_by_the_caller(db_url):
    with UnitOfWork(db_url, relayed=True) as uow:
        first, second = _submit(uow.session, "i-atonce01"), _submit(uow.session, "i-atonce02")
        # Written already: the transaction reads them back without a flush.
        assert uow.session.scalar(select(func.count()).select_from(QueuedJob).where(
            QueuedJob.task_id.in_([first, second]))) == 2
    jobs, rows = _written(db_url, [first, second])
    assert jobs == 2
    assert [(row.id, row.task_id) for row in uow.outbox_rows] == rows
    assert [row.task_id for row in uow.outbox_rows] == [first, second]
    assert all(row.claimed_until is not None and row.kind == "job" and row.queue == QUEUE
               for row in uow.outbox_rows)
    with UnitOfWork(db_url) as check:
        job = check.session.scalar(select(QueuedJob).where(QueuedJob.task_id == first))
        assert (job.state, job.created_at is not None, job.redeliver_at is not None) == \
            ("pending", True, True)


def test_a_transaction_that_fails_after_them_writes_and_relays_nothing(db_url):
    uow = UnitOfWork(db_url, relayed=True)
    with pytest.raises(RuntimeError), uow:
        job = _submit(uow.session, "i-atonce03")
        raise RuntimeError("the request fails after queueing its job")
    assert _written(db_url, [job]) == (0, [])
    assert uow.outbox_rows == []


def test_in_a_savepoint_they_wait_for_the_flush_and_vanish_with_its_rollback(db_url):
    with UnitOfWork(db_url, relayed=True) as uow:
        kept = _submit(uow.session, "i-atonce04")
        savepoint = uow.session.begin_nested()
        undone = _submit(uow.session, "i-atonce05")
        uow.session.flush()
        savepoint.rollback()
    assert _written(db_url, [kept, undone])[0] == 1
    assert [row.task_id for row in uow.outbox_rows] == [kept]


def test_a_value_its_column_cannot_hold_is_refused_and_nothing_is_written(db_url):
    queue = "hva-handle.hva-atonce-refused"
    uow = UnitOfWork(db_url, relayed=True)
    with pytest.raises(InvalidArgument, match="queued_jobs.resource_id"), uow:
        outbox.jobs.submit(uow.session, queue, "run_local_store", "i-atonce06",
                           resource_id="i-" + "x" * 300, at_once=True)
    with UnitOfWork(db_url) as check:
        for model, column in ((QueuedJob, QueuedJob.queue_name),
                              (OutboxMessage, OutboxMessage.queue)):
            assert check.session.scalar(select(func.count()).select_from(model).where(
                column == queue)) == 0
    assert uow.outbox_rows == []
