"""The job being run right now in this thread (jobs it submits inherit its session)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CurrentJob:
    job_id: str
    session_id: str


current_job: ContextVar[CurrentJob | None] = ContextVar("current_job", default=None)
