"""Jobs submitted by agents: through the Collector, so each is in the ledger and the outbox.

push_job(queue, job_name, args, resource_id=None, retry_max=0, parent_job_id=None)
    -> job id (``job-xxxxxxxx``). A job submitted while running ``parent_job_id`` joins
    that job's session.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from collector.db import outbox
from collector.errors import InvalidArgument
from collector.jobcontext import CurrentJob, current_job
from collector.models import QueuedJob

NODE_QUEUE = re.compile(r"^[a-z][a-z0-9-]*\.[A-Za-z0-9._:-]+$")
JOB_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def push_job(session: Session, queue: str, job_name: str, args: list[Any],
             resource_id: str | None = None, retry_max: int = 0,
             parent_job_id: str | None = None) -> str:
    """Queue ``job_name(*args)`` on the per-node ``queue`` (``hva-handle.hva.demo1``)."""
    if not NODE_QUEUE.match(queue) or len(queue) > 255:
        raise InvalidArgument(f"job queue must be '<endpoint>.<node_id>', got {queue!r}")
    if not JOB_NAME.match(job_name):
        raise InvalidArgument(f"invalid job name: {job_name!r}")
    if retry_max < 0:
        raise InvalidArgument("retry_max must not be negative")
    token = None
    if parent_job_id is not None:
        parent = QueuedJob.by_cuuid(session, parent_job_id)
        token = current_job.set(CurrentJob(parent.canonical_uuid,
                                           parent.session_id or parent.canonical_uuid))
    try:
        return outbox.jobs.submit(session, queue, job_name, *args, resource_id=resource_id,
                                  retry_max=retry_max)
    finally:
        if token is not None:
            current_job.reset(token)
