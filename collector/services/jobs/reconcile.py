"""Ledger rows whose outcome callback was lost, finished from the job's own final outcome.

A pushed job that no agent library reports (a scheduler job, a job run by a plain Celery
agent: ``delivery_count`` 0) learns its outcome only from its ``link`` / ``link_error``
callbacks (``jobqueue-proxy.job_succeeded`` / ``job_failed``). Those are retried through
transient failures, but one may still be lost (its retries spent, its message gone with a
broker). The maintenance pass then finishes the row from what the result backend says of
the job, exactly as the callback would have:

1. ``awaiting_outcome``: pending pushed rows no library reported, unchanged for a while;
2. the task layer reads each one's final state (SUCCESS / FAILURE) from the result backend,
   with no transaction open (``Outcome``; anything else, or nothing: not yet);
3. ``apply_outcomes``: each row is locked and checked again (still pending, no library
   report, no outcome recorded since step 1), then ``ledger.job_succeeded`` /
   ``ledger.job_failed`` run as the callback would have run them.

A FAILURE in the backend may be that of an earlier try when the row was pushed again since
(``retry_count`` > 0): it counts only when the backend recorded it after the row's last
change. Safe to run twice, and at once: the check in step 3 runs under the row's lock, and
a callback arriving late finds the row finished and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.db import skip_locked
from collector.models import QueuedJob
from collector.services.jobs import ledger
from collector.timeutil import utcnow

SUCCESS, FAILURE = "SUCCESS", "FAILURE"  # Celery's final states, as the backend spells them


@dataclass(frozen=True)
class Awaiting:
    """A ledger row waiting for its outcome, as step 1 saw it."""

    job_id: str
    retry_count: int


@dataclass(frozen=True)
class Outcome:
    """A job's final state in the result backend (``failure``: its ``{"error_type",
    "message"}``), and when the backend recorded it (None when it does not say)."""

    state: str
    failure: dict[str, Any] | None = None
    done_at: datetime | None = None


def awaiting_outcome(session: Session, older_than: float, limit: int = 500) -> list[Awaiting]:
    """Pending pushed jobs that only a callback can finish, unchanged for ``older_than``
    seconds (updated_at is written by the workers' clock, as read here). Most wait for their
    node, and may keep waiting for hours: at most ``limit`` of them, picked at random, so
    that those never hold back a job whose callback was lost."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    rows = session.execute(
        select(QueuedJob.task_id, QueuedJob.retry_count)
        .where(QueuedJob.state == "pending", QueuedJob.task_id.is_not(None),
               QueuedJob.delivery_count == 0, QueuedJob.updated_at < cutoff)
        .order_by(func.random()).limit(limit))
    return [Awaiting(task_id, retry_count) for task_id, retry_count in rows]


def apply_outcomes(session: Session, seen: list[Awaiting],
                   outcomes: dict[str, Outcome]) -> dict[str, list[str]]:
    """Finish each row of ``seen`` whose final outcome is in ``outcomes``; the ids per
    outcome (``succeeded``, ``failed``)."""
    done: dict[str, list[str]] = {"succeeded": [], "failed": []}
    by_id = {a.job_id: a for a in seen if a.job_id in outcomes}
    if not by_id:
        return done
    rows = session.scalars(skip_locked(session, select(QueuedJob).where(
        QueuedJob.task_id.in_(list(by_id))).order_by(QueuedJob.id)))
    for job in rows:
        outcome = outcomes[job.task_id]
        if not _still_awaiting(job, by_id[job.task_id], outcome):
            continue
        if outcome.state == SUCCESS:
            ledger.job_succeeded(session, job.task_id)
            done["succeeded"].append(job.task_id)
        elif outcome.state == FAILURE:
            ledger.job_failed(session, job.task_id, outcome.failure)
            done["failed"].append(job.task_id)
    return done


def _still_awaiting(job: QueuedJob, seen: Awaiting, outcome: Outcome) -> bool:
    if job.state != "pending" or job.delivery_count != 0 or job.retry_count != seen.retry_count:
        return False  # a callback or another pass got there first, or an agent took it
    if job.retry_count == 0:
        return True  # no outcome was ever recorded: the backend's is this try's
    # Pushed again after a failure: the backend may still hold the earlier try's outcome.
    return outcome.done_at is not None and outcome.done_at > job.updated_at
