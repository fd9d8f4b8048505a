"""Placement requests that nothing moves any more are placed again, or refused.

An instance or a standalone volume waits in ``scheduling`` for its placement job (a new
instance: ``schedule_instance``; a start: ``schedule_start_instance``; a volume:
``schedule_volume``). The job is retried through transient failures, but it may still end
without deciding anything: its retries spent in a long outage, an unexpected error, an
operator's cancel. Nothing else would move the request then, so the maintenance pass
(``redrive``) looks for requests left ``scheduling`` whose newest placement job is no longer
alive in the ledger (finished, or missing), for longer than a grace period:

- it submits the same placement job again (a new ledger row, sent after the commit);
- after ``max_jobs`` placement jobs that ended without a placement in a row, or when the
  newest was cancelled, it refuses the request instead, as a placement failure is applied
  (``collector.scheduling.handlers``): a new instance ``terminated``, a start back to
  ``stopped``, a volume ``deleted``, the reason (``PlacementError: ...``) in
  ``placement_error``.

A bulk launch (``api.create_instances``) has one job, ``schedule_launch``, whose resource
id is its first instance's; each instance names that id (``request_params["launch"]``), so
its jobs are the launch's and its own. The launch's job is submitted again as it was (every
instance, ``min_count``): its placements commit together, so an instance of it still
waiting means none of them was placed, and the instances it placed meanwhile are skipped
(noop). After ``max_jobs``, each instance is refused as any new instance is.

Safe to run twice, and at once: each request is locked (``SKIP LOCKED`` on PostgreSQL; a
placement running now holds it too) and its jobs read again under the lock, so a second pass
sees the job the first submitted, alive, and leaves the request alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import literal, null, or_, select
from sqlalchemy.orm import Session

from collector import ids, wire
from collector.db import db_now, outbox, skip_locked
from collector.models import Instance, QueuedJob, Volume
from collector.scheduling import teardown
from collector.scheduling.batch import LAUNCH_KEY
from collector.timeutil import utcnow

WAITING = "scheduling"
ALIVE = frozenset({"pending", "running", "held"})  # a job that may still decide
PLACEMENT_JOBS = (wire.SchedulerJob.SCHEDULE_INSTANCE, wire.SchedulerJob.SCHEDULE_START_INSTANCE,
                  wire.SchedulerJob.SCHEDULE_VOLUME, wire.SchedulerJob.SCHEDULE_LAUNCH)
REFUSAL = "PlacementError"  # the error type a refused request records


def redrive(session: Session, after_sec: float, max_jobs: int,
            limit: int = 200) -> dict[str, list[str]]:
    """One pass: the ids of the requests placed again (``redriven``) and refused
    (``refused``)."""
    done: dict[str, list[str]] = {"redriven": [], "refused": []}
    now = db_now(session)
    for model in (Instance, Volume):
        for row in _stuck(session, model, now, after_sec, limit):
            moved_by = _moved_by(row)
            jobs = _jobs_of(_placement_jobs(session, [r for r in moved_by if r]), moved_by)
            if not _dead(jobs, now, after_sec):
                continue  # read again under the lock: another pass or a placement got there
            reason = _refusal(jobs, max_jobs)
            if reason is None:
                _submit_again(session, row, jobs)
                done["redriven"].append(row.canonical_uuid)
            else:
                _refuse(session, row, _job_name(row, jobs), reason)
                done["refused"].append(row.canonical_uuid)
    return done


def _stuck(session: Session, model: type[Instance] | type[Volume], now: datetime,
           after_sec: float, limit: int) -> list[Any]:
    """Rows of ``model`` waiting with no live placement job, locked (skipping rows another
    transaction holds). Candidates are found without locks first, so the requests whose
    placement runs or waits in the queue, usually all of them, are never locked here; nor
    do they count against ``limit``."""
    resource = QueuedJob.resource_id == literal(f"{model.prefix}-") + model.uuid
    launch: Any = null()
    if model is Instance:  # a bulk launch's instances wait for its job too
        launch = Instance.request_params[LAUNCH_KEY].as_string()
        resource = or_(resource, QueuedJob.resource_id == launch)
    alive = select(QueuedJob.id).where(
        QueuedJob.queue_name == wire.SCHEDULER, QueuedJob.state.in_(ALIVE), resource)
    stmt = select(model.id, model.uuid, launch).where(
        model.state == WAITING, model.updated_at < utcnow() - timedelta(seconds=after_sec),
        ~alive.exists())
    if model is Volume:  # an instance's volumes are placed with it
        stmt = stmt.where(Volume.instance_id.is_(None), Volume.deleted_at.is_(None))
    candidates = {pk: (ids.canonical(model.prefix, uuid), first) for pk, uuid, first
                  in session.execute(stmt.order_by(model.id).limit(limit))}
    jobs = _placement_jobs(session, [r for moved in candidates.values() for r in moved if r])
    stuck = [pk for pk, moved in candidates.items()
             if _dead(_jobs_of(jobs, moved), now, after_sec)]
    if not stuck:
        return []
    return list(session.scalars(skip_locked(session, select(model).where(
        model.id.in_(stuck), model.state == WAITING).order_by(model.id))))


def _placement_jobs(session: Session, resource_ids: list[str]) -> dict[str, list[QueuedJob]]:
    """Each resource's placement jobs, newest first."""
    if not resource_ids:
        return {}
    found: dict[str, list[QueuedJob]] = {}
    for job in session.scalars(select(QueuedJob).where(
            QueuedJob.queue_name == wire.SCHEDULER, QueuedJob.resource_id.in_(resource_ids),
            QueuedJob.job_name.in_(PLACEMENT_JOBS)).order_by(QueuedJob.id.desc())):
        found.setdefault(job.resource_id or "", []).append(job)
    return found


def _moved_by(row: Instance | Volume) -> tuple[str, str | None]:
    """The resource ids whose placement jobs move the row: its own, and for an instance
    of a bulk launch the launch's (its first instance's)."""
    launch = (row.request_params or {}).get(LAUNCH_KEY) if isinstance(row, Instance) else None
    return row.canonical_uuid, launch


def _jobs_of(jobs: dict[str, list[QueuedJob]], moved_by: tuple[str, str | None]
             ) -> list[QueuedJob]:
    """The placement jobs of those resource ids, newest first, each once."""
    found = {job.id: job for resource in moved_by if resource for job in jobs.get(resource, [])}
    return sorted(found.values(), key=lambda job: job.id, reverse=True)


def _submit_again(session: Session, row: Instance | Volume, jobs: list[QueuedJob]) -> None:
    """The newest placement job again, with its arguments: a launch's job places every
    instance of the launch still waiting (none of them was placed: the job's placements
    commit together), with its ``min_count``. Without any, the request's own job."""
    if jobs and jobs[0].params:
        outbox.jobs.submit(session, wire.SCHEDULER, jobs[0].job_name or "",
                           *jobs[0].params["args"], resource_id=jobs[0].resource_id)
    else:
        outbox.jobs.submit(session, wire.SCHEDULER, _job_name(row, jobs), row.canonical_uuid,
                           resource_id=row.canonical_uuid)


def _dead(jobs: list[QueuedJob], now: datetime, after_sec: float) -> bool:
    """No placement job that may still decide, and the newest ended ``after_sec`` ago
    (its outcome's own effects, committed before the ledger heard of it, are in)."""
    if not jobs:
        return True
    newest = jobs[0]
    if newest.state in ALIVE:
        return False
    return newest.finished_at is None or newest.finished_at < now - timedelta(seconds=after_sec)


def _job_name(row: Instance | Volume, jobs: list[QueuedJob]) -> str:
    """The placement job the request waits for: its newest one's; without any, a volume's,
    a new instance's (its volumes wait with it) or a start's."""
    if jobs:
        return jobs[0].job_name or ""
    if isinstance(row, Volume):
        return wire.SchedulerJob.SCHEDULE_VOLUME
    if any(vol.state == WAITING for vol in row.volumes):
        return wire.SchedulerJob.SCHEDULE_INSTANCE
    return wire.SchedulerJob.SCHEDULE_START_INSTANCE


def _refusal(jobs: list[QueuedJob], max_jobs: int) -> str | None:
    """Why the request is refused rather than placed again; None: place it again."""
    if jobs and jobs[0].finish_status == "cancel":
        return f"{REFUSAL}: its placement job {jobs[0].canonical_uuid} was cancelled"
    ended = 0
    for job in jobs:  # newest first: the placement jobs that ended undecided, in a row
        if job.finish_status == "success":
            break
        ended += 1
    if ended < max_jobs:
        return None
    last = jobs[0].finish_message or {}
    return (f"{REFUSAL}: {ended} placement jobs ended without a placement (the last: "
            f"{last.get('error_type', 'failed')}: {last.get('message', '')})")[:1000]


def _refuse(session: Session, row: Instance | Volume, job_name: str, reason: str) -> None:
    """Apply the refusal as the placement handlers apply a placement failure."""
    row.placement_error = reason
    if isinstance(row, Volume):
        row.destroy()
    elif job_name == wire.SchedulerJob.SCHEDULE_START_INSTANCE:
        row.state = "stopped"  # nothing destroyed: it can be started again
    else:
        teardown.finalize_instance(session, row)
    session.flush()
