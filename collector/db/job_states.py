"""Ledger rows' transitions that both the ledger service and placement make: finishing a
job (and releasing what waited for it), cancelling one (revoked after the commit when it
was sent), and releasing held jobs.

A held job (state ``held``) is written to the ledger now and sent later: its message goes
to the outbox, state ``pending``, at whichever comes first:

- the job it waits for finishes, whatever its outcome (``after_job_id``);
- its time comes (``held_until``; a maintenance pass releases what is due);
- with neither: its node comes back online (a heartbeat after ``timeout``/``offline``).

Evacuation uses them to fence a host: the cleanup of a moved instance waits for the old
host to come back, and a boot on the new host waits for that cleanup or a fence timeout.
Every transition runs under the job's row lock, so it happens once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import wire
from collector.db import outbox
from collector.db.engine import db_now, matches_any, skip_locked
from collector.models import Instance, MigrationAllocation, QueuedJob
from collector.models.placement import release_migration_allocation


def finish(session: Session, job: QueuedJob, now: datetime, status: str,
           message: Any = None, release: bool = True) -> None:
    """``job`` finished with ``status`` (success, fail, cancel); what waited for it goes
    (``release`` False: the caller releases it, ``release_after_all`` for several jobs)."""
    job.state, job.finish_status, job.finished_at = "finished", status, now
    if message is not None:
        job.finish_message = message
    if release:
        release_after(session, job)
    if wire.endpoint_of(job.queue_name or "") == wire.MIGRATION_HANDLE:
        _migration_ended(session, job)


def _migration_ended(session: Session, job: QueuedJob) -> None:
    """A migration job ended: if its switch was not reported, the migration failed, so the
    instance runs on where it was (``running``) and the destination's claim is freed. The
    instance row is locked first, as the switch locks it, so one of the two wins."""
    raw = (job.resource_id or "").partition("-")[2]
    inst = session.scalars(select(Instance).where(Instance.uuid == raw)
                           .with_for_update()).first()
    held = session.scalar(select(MigrationAllocation.instance_id)
                          .where(MigrationAllocation.job_id == job.task_id))
    if inst is None or held != inst.id:
        return  # switched already, or a claim of another migration
    release_migration_allocation(session, inst.id)
    if inst.state == "migrating":
        inst.state = "running"
        reason = (job.finish_message or {}).get("message") \
            if isinstance(job.finish_message, dict) else job.finish_message
        inst.placement_error = f"migration failed ({job.finish_status}): {reason or 'no switch'}"
    session.flush()


def cancel(session: Session, job: QueuedJob, message: dict[str, Any]) -> None:
    """Finish ``job`` as cancelled; a sent one is revoked after the commit (a running one
    terminated)."""
    was_running, was_sent = job.state == "running", job.state != "held"
    finish(session, job, db_now(session), "cancel", message)
    if job.task_id and was_sent:
        outbox.control.revoke(session, job.task_id, terminate=was_running)


def cancel_on_node(session: Session, resource_id: str, node_id: str, reason: str) -> list[str]:
    """Cancel every unfinished job for ``resource_id`` on the queues of ``node_id`` (fencing:
    the resource moved off that node); their ids. The agent library skips a cancelled job
    it has not started and stops a running one at its next heartbeat."""
    jobs = session.scalars(
        select(QueuedJob).where(QueuedJob.resource_id == resource_id,
                                QueuedJob.state.in_(("pending", "running", "held")),
                                _on_node(node_id))
        .order_by(QueuedJob.id).with_for_update()).all()
    for job in jobs:
        cancel(session, job, {"message": reason})
    return [job.canonical_uuid for job in jobs]


def _on_node(node_id: str) -> Any:
    return QueuedJob.queue_name.endswith(f".{node_id}", autoescape=True)


def _release(session: Session, job: QueuedJob) -> None:
    job.state = "pending"
    outbox.job_message(session, job)


def _released(session: Session, stmt: object) -> list[str]:
    released = []
    for job in session.scalars(skip_locked(session, stmt)):  # type: ignore[arg-type]
        _release(session, job)
        released.append(job.canonical_uuid)
    return released


def release_after(session: Session, job: QueuedJob) -> list[str]:
    """``job`` finished: release the jobs that waited for it; their ids."""
    return _released(session, select(QueuedJob).where(
        QueuedJob.state == "held", QueuedJob.after_job_id == job.id).order_by(QueuedJob.id))


def release_after_all(session: Session, jobs: list[QueuedJob]) -> list[str]:
    """``release_after`` for several finished jobs, in one statement."""
    return _released(session, select(QueuedJob).where(
        QueuedJob.state == "held",
        matches_any(session, QueuedJob.after_job_id, [job.id for job in jobs]))
        .order_by(QueuedJob.id)) if jobs else []


def release_due(session: Session) -> list[str]:
    """Release held jobs whose time has come (maintenance; safe to run twice)."""
    return _released(session, select(QueuedJob).where(
        QueuedJob.state == "held", QueuedJob.held_until <= db_now(session))
        .order_by(QueuedJob.id))


def release_for_node(session: Session, node_id: str) -> list[str]:
    """``node_id`` is back: release the held jobs of its queues that wait for nothing else."""
    return _released(session, select(QueuedJob).where(
        QueuedJob.state == "held", _on_node(node_id),
        QueuedJob.after_job_id.is_(None), QueuedJob.held_until.is_(None))
        .order_by(QueuedJob.id))
