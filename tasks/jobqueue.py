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


endpoint = Endpoint("jobqueue-proxy").expose(
    jobqueue.submit, jobqueue.pop, jobqueue.cancel, find, jobqueue.finish_success,
    jobqueue.finish_fail, jobqueue.running, jobqueue.heartbeat, jobqueue.job_succeeded,
    jobqueue.job_failed, list=jobqueue.list_jobs,
)


@app.task(name="maintenance.reap_jobs", queue="maintenance")
def reap_jobs() -> dict:
    """Jobs whose worker died: pushed again or failed (beat runs it; safe to run twice)."""
    return run_in_unit_of_work(jobqueue.reap)
