"""The job ledger (``queued_jobs``) and the ``jobqueue-proxy`` operations on it.

Two kinds of jobs share the ledger:

- pushed jobs (``task_id`` set): sent to a node queue through the outbox; the agent
  library reports ``running`` / ``finish_success`` / ``finish_fail``; a failed job with
  retries left, or one whose worker died (the reaper), is pushed again under the same id;
- pulled jobs (``task_id`` NULL): ``submit`` then ``pop`` by a polling worker, as the
  original RDBMS queue did (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).

A job runs at most once per delivery decision: ``running`` refuses a job that is finished,
cancelled, or running on a worker that is still heartbeating.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.db import db_now, job_states, outbox, settings_of, skip_locked
from collector.errors import AlreadyTerminated, InvalidArgument
from collector.jobcontext import current_job
from collector.models import QueuedJob
from collector.timeutil import to_iso

log = logging.getLogger(__name__)


def job_document(job: QueuedJob) -> dict[str, Any]:
    doc = job.column_values()
    doc["uuid"] = job.canonical_uuid
    doc["job_id"] = job.canonical_uuid
    for key in ("created_at", "updated_at", "started_at", "finished_at", "heartbeat_at"):
        value = getattr(job, key)
        doc[key] = to_iso(value)
    return doc


def _lookup(session: Session, job_id: str, lock: bool = True) -> QueuedJob:
    return QueuedJob.by_cuuid(session, job_id, for_update=lock)


def _opts(opts: dict[str, Any] | None) -> dict[str, Any]:
    opts = opts or {}
    for key in ("retry_max", "retry_max_if_zero"):
        if key in opts and (not isinstance(opts[key], int) or isinstance(opts[key], bool)
                            or opts[key] < 0):
            raise InvalidArgument(f"opts.{key} must be a non-negative integer")
    return opts


def submit(session: Session, queue_name: str, resource_uuid: str | None,
           params: dict[str, Any] | None, opts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pulled job: pending until a worker pops it."""
    opts = _opts(opts)
    if not queue_name:
        raise InvalidArgument("queue_name must not be empty")
    job = QueuedJob(queue_name=queue_name, resource_id=resource_uuid, params=params or {},
                    state="pending", retry_max=opts.get("retry_max", 0), retry_count=0)
    parent = current_job.get()
    job.session_id = parent.session_id if parent else None
    session.add(job)
    session.flush()
    job.session_id = job.session_id or job.canonical_uuid
    return job_document(job)


def pop(session: Session, queue_name: str, worker_id: str,
        opts: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Claim the oldest pending pulled job of ``queue_name``; None when there is none."""
    opts = _opts(opts)
    if not worker_id:
        raise InvalidArgument("worker_id must not be empty")
    stmt = (select(QueuedJob).where(QueuedJob.queue_name == queue_name,
                                    QueuedJob.state == "pending", QueuedJob.worker_id.is_(None),
                                    QueuedJob.task_id.is_(None))
            .order_by(QueuedJob.id).limit(1))
    stmt = skip_locked(session, stmt)
    job = session.scalars(stmt).first()
    if job is None:
        return None
    now = db_now(session)
    job.state, job.worker_id, job.heartbeat_at = "running", worker_id, now
    if job.started_at is None:
        job.started_at = now
        if job.retry_max == 0 and opts.get("retry_max_if_zero", 0) > 0:
            job.retry_max = opts["retry_max_if_zero"]
    job.retry_count += 1
    job.delivery_count += 1
    return job_document(job)


def running(session: Session, job_id: str, worker_id: str) -> dict[str, Any]:
    """An agent is about to run a pushed job: may it? ``{"run": bool, "reason", "job"}``."""
    job = _lookup(session, job_id)
    now = db_now(session)
    if job.state == "finished":
        return {"run": False, "reason": f"already finished ({job.finish_status})",
                "job": job_document(job)}
    if job.state == "running" and job.worker_id != worker_id and job.heartbeat_at and \
            (now - job.heartbeat_at).total_seconds() < settings_of(session).job_heartbeat_timeout:
        return {"run": False, "reason": f"running on {job.worker_id}", "job": job_document(job)}
    if job.state == "running" and job.worker_id == worker_id:
        # This worker asked already (its report is retried after a lost answer): same answer.
        return {"run": True, "reason": "", "job": job_document(job)}
    if job.delivery_count >= settings_of(session).job_max_deliveries:
        job_states.finish(session, job, now, "fail", {"message": f"delivered {job.delivery_count} times; "
                                   "giving up (poison job or crashing worker)"})
        return {"run": False, "reason": "too many deliveries", "job": job_document(job)}
    job.state, job.worker_id, job.heartbeat_at = "running", worker_id, now
    job.started_at = job.started_at or now
    job.retry_count += 1
    job.delivery_count += 1
    return {"run": True, "reason": "", "job": job_document(job)}


def heartbeat(session: Session, job_id: str, worker_id: str) -> bool:
    """The worker running ``job_id`` is alive; False when the job is no longer its own."""
    job = _lookup(session, job_id)
    if job.state != "running" or job.worker_id != worker_id:
        return False
    job.heartbeat_at = db_now(session)
    return True


def _late_finish_of_cancelled(job: QueuedJob, what: str) -> bool:
    if job.state == "finished" and job.finish_status == "cancel":
        log.info("ignoring %s of cancelled job %s", what, job.canonical_uuid)
        return True
    return False


def finish_success(session: Session, job_id: str,
                   finish_message: Any = None) -> dict[str, Any]:
    job = _lookup(session, job_id)
    if _late_finish_of_cancelled(job, "finish_success"):
        return job_document(job)
    if job.state == "finished":
        raise AlreadyTerminated(f"job {job_id} already finished ({job.finish_status})")
    job_states.finish(session, job, db_now(session), "success",
            None if finish_message is None else _message(finish_message))
    return job_document(job)


def finish_fail(session: Session, job_id: str, failure_reason: Any = None) -> dict[str, Any]:
    """Back to pending (and pushed again) while retries remain, else finished/fail."""
    job = _lookup(session, job_id)
    if _late_finish_of_cancelled(job, "finish_fail"):
        return job_document(job)
    if job.state == "finished":
        raise AlreadyTerminated(f"job {job_id} already finished ({job.finish_status})")
    if job.state == "pending" and job.delivery_count > 0:
        # Already handed back (a repeated report, or the reaper was first): pushing it
        # again would send a second copy of the same retry.
        log.info("ignoring finish_fail of %s: already pending again", job.canonical_uuid)
        return job_document(job)
    job.finish_message = _message(failure_reason)
    if job.retry_max > job.retry_count:
        _requeue(session, job)
    else:
        job_states.finish(session, job, db_now(session), "fail")
    return job_document(job)


def job_succeeded(session: Session, job_id: str) -> dict[str, Any]:
    """Celery ``link`` of every pushed job: the ledger learns of a success even from an
    agent built on plain Celery. Runs only once the job's own result in the result backend
    is SUCCESS (checked by the task; otherwise InvalidStateTransition). A no-op when the
    agent library already reported the job (it counts deliveries) or the job is finished."""
    job = _lookup(session, job_id)
    if job.delivery_count == 0 and job.state != "finished":
        job.retry_count += 1
        job_states.finish(session, job, db_now(session), "success")
    return job_document(job)


def job_failed(session: Session, job_id: str,
               failure_reason: dict[str, Any] | None = None) -> dict[str, Any]:
    """Celery ``link_error`` of every pushed job; like ``job_succeeded``, only for agents
    that do not report themselves, and only once the job's result is FAILURE. Retries as ``finish_fail`` does. ``failure_reason``
    (``{"error_type", "message"}``, read from the result backend by the task layer) is
    kept as the job's finish message."""
    job = _lookup(session, job_id)
    if job.delivery_count == 0 and job.state != "finished":
        job.retry_count += 1
        return finish_fail(session, job_id,
                           failure_reason or {"message": "the job failed on its node"})
    return job_document(job)


def cancel(session: Session, job_id: str) -> dict[str, Any]:
    """A pending job never starts; a running pushed job is revoked after the commit."""
    job = _lookup(session, job_id)
    if job.state == "finished":
        raise AlreadyTerminated(f"job {job_id} already finished ({job.finish_status})")
    job_states.cancel(session, job, {"message": "cancelled"})
    return job_document(job)


def find(session: Session, job_id: str) -> dict[str, Any]:
    return job_document(_lookup(session, job_id, lock=False))


def list_jobs(session: Session, queue: str | None = None, state: str | None = None,
              limit: int = 50) -> list[dict[str, Any]]:
    if not 1 <= limit <= 1000:  # PostgreSQL refuses a negative LIMIT, SQLite reads it as none
        raise InvalidArgument("limit must be within 1..1000")
    stmt = select(QueuedJob).order_by(QueuedJob.id.desc()).limit(limit)
    if queue:
        stmt = stmt.where(QueuedJob.queue_name == queue)
    if state:
        stmt = stmt.where(QueuedJob.state == state)
    return [job_document(j) for j in session.scalars(stmt)]


def reap(session: Session, timeout_sec: int | None = None) -> dict[str, list[str]]:
    """Jobs whose worker stopped heartbeating: pushed again, or failed when out of tries."""
    timeout_sec = timeout_sec or settings_of(session).job_heartbeat_timeout
    now = db_now(session)
    stmt = select(QueuedJob).where(QueuedJob.state == "running",
                                   QueuedJob.heartbeat_at < now - timedelta(seconds=timeout_sec))
    stmt = skip_locked(session, stmt)
    out: dict[str, list[str]] = {"requeued": [], "failed": [], "expired": []}
    settings = settings_of(session)
    max_deliveries = settings.job_max_deliveries
    for job in session.scalars(stmt):
        lost = {"message": f"worker {job.worker_id} lost (no heartbeat for {timeout_sec}s)"}
        if job.delivery_count < max_deliveries:
            job.finish_message = lost
            _requeue(session, job)
            out["requeued"].append(job.canonical_uuid)
        else:
            job_states.finish(session, job, now, "fail", lost)
            out["failed"].append(job.canonical_uuid)
    # Pushed jobs no agent started before their message expired will never run.
    stale = select(QueuedJob).where(
        QueuedJob.state == "pending", QueuedJob.task_id.is_not(None),
        QueuedJob.updated_at < now - timedelta(seconds=settings.job_expires))
    stale = skip_locked(session, stale)
    for job in session.scalars(stale):
        job_states.finish(session, job, now, "fail", {"message": f"expired: no agent of {job.queue_name} "
                                   f"started it within {settings.job_expires}s"})
        out["expired"].append(job.canonical_uuid)
    return out


def _requeue(session: Session, job: QueuedJob) -> None:
    job.state, job.worker_id, job.heartbeat_at = "pending", None, None
    if job.task_id:  # pushed: send it again under the same id (the ledger dedupes)
        outbox.job_message(session, job)


def _message(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"items": value}
    return {"message": "" if value is None else str(value)}
