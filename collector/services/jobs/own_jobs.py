"""The Collector's own jobs (``outbox.COLLECTOR_JOB_QUEUES``: the scheduler's), run in the
transaction of their work.

``run(session, job_id, work, args, kwargs)``: ``work(session, *args, **kwargs)``, then the
job's ledger row ends in the same transaction (``success``, or ``fail`` with the reason of a
failed outcome): the ledger says what was committed, with no callback in between. A job
already finished (a repeated message, a job cancelled, a job a batch took along) answers
``noop`` after one read and does nothing else.

A ``schedule_instance`` job takes along the other ``schedule_instance`` jobs waiting in the
ledger (``COMPANIONS`` at most, oldest first) and places them all in one transaction
(``batch.schedule_instances``), each job finished with its own outcome. Single requests are
then placed in batches whenever they queue up, and their own messages find their job
finished. A waiting job is taken only when its instance is not locked by another
transaction (``SKIP LOCKED``): a job that a worker is placing right now is left to it. Locks
are taken in one order: the job's own instance (waited for while nothing else is held),
the waiting instances (never waited for), then the job rows as they finish.

The jobs a batch took along are listed in ``session.info[TAKEN_ALONG]`` with the answer
their own messages will get, so that the task layer, after the commit, can answer those
messages without running them (``tasks.taken_along``). Before placing them, the batch hands
their message ids to ``session.info[ON_TAKING_ALONG]`` when the task layer put a callable
there: their messages, if they arrive meanwhile, then wait for the batch's answer instead
of running to find their job taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import ids, wire
from collector.db import db_now, dialect_name, job_states, matches_any
from collector.errors import UnknownInstanceID
from collector.models import Instance, QueuedJob
from collector.scheduling import batch, handlers

COMPANIONS = 15  # waiting placements a schedule_instance job takes along (a batch of 16)
# session.info: {message id: answer} of the jobs a batch took along and finished, for the
# task layer to answer their own messages at receipt once the batch has committed.
TAKEN_ALONG = "jobs_taken_along"
# session.info: called with the message ids of the jobs a batch takes along, before it
# places them.
ON_TAKING_ALONG = "on_taking_jobs_along"


def run(session: Session, job_id: str, work: Callable[..., Any], args: tuple | list = (),
        kwargs: dict[str, Any] | None = None) -> Any:
    """``work`` for the job ``job_id``, its ledger row finished with it (see the module)."""
    job = _job(session, job_id)
    if job is not None and job.state == "finished":
        return finished_answer(job_id, job.finish_status)
    if job is not None and job.job_name == wire.SchedulerJob.SCHEDULE_INSTANCE and \
            len(args) == 1 and not kwargs:
        return _schedule_with_waiting(session, job, args[0])
    answer = work(session, *args, **(kwargs or {}))
    if job is not None:
        _finish(session, [(job, answer)])
    return answer


def finished_answer(job_id: str, finish_status: str | None) -> dict[str, Any]:
    """What a message of a job already finished answers."""
    return {"outcome": "noop", "job_id": job_id, "state": "finished",
            "finish_status": finish_status}


def _job(session: Session, job_id: str) -> QueuedJob | None:
    return session.scalars(select(QueuedJob).where(
        QueuedJob.uuid == ids.raw_part(job_id, QueuedJob.prefix))).first()


def _finish(session: Session, outcomes: list[tuple[QueuedJob, Any]]) -> None:
    """Finish each job with its answer, the rows read again under their locks in one
    statement (in id order); a job that finished meanwhile stays as it is."""
    locked = {job.id: job for job in session.scalars(
        select(QueuedJob).where(matches_any(session, QueuedJob.id, [job.id for job, _ in outcomes]))
        .order_by(QueuedJob.id).with_for_update()
        .execution_options(populate_existing=True))}
    now, ended = db_now(session), []
    for job, answer in outcomes:
        current = locked.get(job.id)
        if current is None or current.state == "finished":
            continue
        failed = isinstance(answer, dict) and answer.get("outcome") == "failed"
        message = {"error_type": answer.get("error_type"), "message": answer.get("message")} \
            if failed else None
        current.retry_count += 1
        job_states.finish(session, current, now, "fail" if failed else "success", message,
                          release=False)
        ended.append(current)
    job_states.release_after_all(session, ended)  # what waited for any of them, at once


def waiting_placements(session: Session, but: QueuedJob, limit: int
                       ) -> list[tuple[QueuedJob, str]]:
    """Pending ``schedule_instance`` jobs other than ``but`` whose instance waits for
    placement, each with the id of that instance (locked), oldest first; an instance
    another transaction holds is skipped.

    Two short reads, each on its own index whatever the planner believes of the tables:
    the oldest waiting jobs (a partial index holds the scheduler's pending jobs only), then
    their instances by id, locked in id order. One join on the instance id carved from the
    job's resource id let a planner with stale statistics scan every waiting instance
    once per job."""
    jobs = list(session.scalars(
        select(QueuedJob).where(QueuedJob.queue_name == wire.SCHEDULER,
                                QueuedJob.state == "pending",
                                QueuedJob.job_name == wire.SchedulerJob.SCHEDULE_INSTANCE,
                                QueuedJob.id != but.id)
        .order_by(QueuedJob.id).limit(limit)))  # ix_queued_jobs_waiting_placements
    raws = {job: raw for job in jobs
            if (raw := ids.raw_part_or_none(job.resource_id, Instance.prefix))}
    if not raws:
        return []
    stmt = (select(Instance.uuid).where(matches_any(session, Instance.uuid, set(raws.values())),
                                        Instance.state == "scheduling")
            .order_by(Instance.id))
    if dialect_name(session) == "postgresql":
        # The instances only: their job rows are locked when finished, after them, in the
        # order every writer follows (instance, then job).
        stmt = stmt.with_for_update(skip_locked=True)
    locked = set(session.scalars(stmt))
    return [(job, ids.canonical(Instance.prefix, raw)) for job, raw in raws.items()
            if raw in locked]


def _schedule_with_waiting(session: Session, job: QueuedJob, instance_id: str) -> Any:
    """The job's placement and those of the jobs waiting with it, in one batch.

    The job's own instance is locked first, waiting for it while holding nothing (another
    batch may be placing it); only then are the waiting ones taken, without waiting for
    any of them. Two batches thus never wait on each other's instances."""
    own = ids.canonical(Instance.prefix, ids.raw_part(instance_id, Instance.prefix))
    state = _locked_state(session, own)  # its rows are read with the others', by the batch
    # Only a job whose argument names the instance locked for it (the one its own
    # message would place), and not the instance already placed here.
    along = [] if state != handlers.EXPECTED_STATE else [
        (other, locked) for other, locked in waiting_placements(session, job, COMPANIONS)
        if locked != own and _instance_of(other) == locked]
    announce = session.info.get(ON_TAKING_ALONG)
    if announce is not None and along:
        announce([other.task_id for other, _ in along if other.task_id])
    answers = batch.schedule_instances(session, [instance_id, *(i for _, i in along)])
    _finish(session, list(zip([job, *(other for other, _ in along)], answers, strict=True)))
    taken = session.info.setdefault(TAKEN_ALONG, {})
    for other, _ in along:
        if other.state == "finished" and other.task_id:
            taken[other.task_id] = finished_answer(other.task_id, other.finish_status)
    return answers[0]


def _locked_state(session: Session, instance_id: str) -> str:
    """The instance's state, its row locked (UnknownInstanceID when there is none)."""
    state = session.scalar(select(Instance.state).where(
        Instance.uuid == ids.raw_part(instance_id, Instance.prefix)).with_for_update())
    if state is None:
        raise UnknownInstanceID(f"unknown id '{instance_id}'")
    return state


def _instance_of(job: QueuedJob) -> str | None:
    """The instance id a ``schedule_instance`` job names (its only argument)."""
    args = (job.params or {}).get("args") or []
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None
