"""``jobqueue-proxy.*`` tasks over the job ledger, and the reaper."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from collector.services import jobqueue
from tasks.app import app
from tasks.registry import Endpoint
from tasks.unit_of_work import run_in_unit_of_work


def find(session: Session, job_id: str) -> dict[str, Any]:
    """The ledger row, plus ``live_state`` from the result backend for pushed jobs."""
    doc = jobqueue.find(session, job_id)
    if doc.get("task_id"):
        doc["live_state"] = app.AsyncResult(doc["task_id"]).state
    return doc


def job_failed(session: Session, job_id: str) -> dict[str, Any]:
    """``link_error`` of pushed jobs: fails the ledger row with the job's own error (its
    ``error_type`` and message, as the result backend holds them)."""
    return jobqueue.job_failed(session, job_id, failure_of(job_id))


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


endpoint = Endpoint("jobqueue-proxy").expose(
    jobqueue.submit, jobqueue.pop, jobqueue.cancel, find, jobqueue.finish_success,
    jobqueue.finish_fail, jobqueue.running, jobqueue.heartbeat, jobqueue.job_succeeded,
    job_failed, list=jobqueue.list_jobs,
)


@app.task(name="maintenance.reap_jobs", queue="maintenance")
def reap_jobs() -> dict:
    """Jobs whose worker died: pushed again or failed (beat runs it; safe to run twice)."""
    return run_in_unit_of_work(jobqueue.reap)
