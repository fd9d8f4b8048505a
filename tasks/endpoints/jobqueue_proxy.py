"""``jobqueue-proxy.*`` tasks over the job ledger: agents' job submissions (``push_job``,
recorded and never lost), the ledger's reads and writes, and the outcome callbacks.

``job_succeeded`` / ``job_failed`` are the ``link`` / ``link_error`` callbacks of pushed jobs.
Any client could send them, so each first asks the result backend for the job's own
outcome: ``job_succeeded`` runs only when the job's result is SUCCESS, ``job_failed`` only
when it is FAILURE; otherwise it is refused (InvalidStateTransition) and the ledger is
untouched. Celery sends a success callback just before it stores the result, so the check
waits up to ``OUTCOME_WAIT`` seconds for it. Both callbacks are retried with backoff through
``TransientError`` (the database or the result backend out of reach) for
COLLECTOR_JOB_RETRY_FOR seconds; one lost even so is made good by the maintenance pass
(``collector.services.jobs.reconcile``), from the same result backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from collector import ids, wire
from collector.errors import InvalidStateTransition, TransientError
from collector.services.jobs import ledger, push, reconcile
from tasks.app import app
from tasks.registry import Endpoint, RetryTransient


def find(session: Session, job_id: str) -> dict[str, Any]:
    """The ledger row, plus ``live_state`` from the result backend for pushed jobs."""
    doc = ledger.find(session, job_id)
    if doc.get("task_id"):
        doc["live_state"] = app.AsyncResult(doc["task_id"]).state
    return doc


def job_failed(session: Session, job_id: str) -> dict[str, Any]:
    """``link_error`` of pushed jobs, once the job's own result is FAILURE: fails the ledger
    row with the job's own error (its ``error_type`` and message, as the result backend
    holds them)."""
    return ledger.job_failed(session, job_id, failure_of(job_id))


def failure_of(task_id: str) -> dict[str, Any] | None:
    """``{"error_type", "message"}`` of a failed task from the result backend, or None."""
    try:
        result = app.AsyncResult(task_id)
        if result.state != "FAILURE":
            return None
        exc = result.result
    except Exception:  # backend unreachable or result expired: the generic reason stays
        return None
    if not isinstance(exc, BaseException):
        return None
    message = str(exc.args[0]) if exc.args else str(exc)
    return {"error_type": type(exc).__name__, "message": message}


def final_outcome(task_id: str) -> reconcile.Outcome | None:
    """The task's final outcome in the result backend (SUCCESS or FAILURE, with its error
    and when it was stored); None while it has none, or when the backend cannot say."""
    try:
        result = app.AsyncResult(task_id)
        state = result.state
        if state not in (reconcile.SUCCESS, reconcile.FAILURE):
            return None
        done_at = result.date_done
    except Exception:  # noqa: BLE001 - the backend down: the next pass asks again
        return None
    if isinstance(done_at, datetime) and done_at.tzinfo is None:
        done_at = done_at.replace(tzinfo=UTC)  # Celery stores UTC
    failure = failure_of(task_id) if state == reconcile.FAILURE else None
    return reconcile.Outcome(state, failure, done_at if isinstance(done_at, datetime) else None)


OUTCOME_WAIT = 3.0


def result_state(task_id: str, expected: str, wait: float = OUTCOME_WAIT) -> str:
    """The task's state in the result backend, read until it is ``expected`` or ``wait``
    seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        try:
            state = app.AsyncResult(task_id).state
        except Exception:  # noqa: BLE001 - the backend down: nothing can be confirmed now
            raise TransientError("the result backend cannot be read now; retry") from None
        if state == expected or time.monotonic() >= deadline:
            return state
        time.sleep(0.05)


def outcome_is(expected: str) -> Callable[[str], None]:
    """A guard refusing a callback unless the job's own result state is ``expected``."""

    def guard(job_id: str) -> None:
        ids.raw_part(job_id, "job")
        state = result_state(job_id, expected)
        if state != expected:
            raise InvalidStateTransition(
                f"job {job_id}: its result is {state}, not {expected}; the ledger keeps it")

    return guard


endpoint = Endpoint(wire.JOBQUEUE_PROXY).reads(find, list=ledger.list_jobs).writes(
    push.push_job, ledger.submit, ledger.pop, ledger.cancel, ledger.finish_success,
    ledger.finish_fail, ledger.running, ledger.heartbeat,
)
# Nobody waits on a callback: its retries are the only way its outcome reaches the ledger.
endpoint.register(wire.LedgerCallback.JOB_SUCCEEDED, ledger.job_succeeded,
                  guard=outcome_is("SUCCESS"), retry=RetryTransient())
endpoint.register(wire.LedgerCallback.JOB_FAILED, job_failed, guard=outcome_is("FAILURE"),
                  retry=RetryTransient())
