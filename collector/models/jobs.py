"""The job ledger: one row per job, pushed to a node queue or pulled through the proxy.

The canonical id ``job-xxxxxxxx`` is also the Celery task id of a pushed job.
States: pending -> running -> finished (finish_status success | fail | cancel); a job may
start ``held`` (no message sent yet) until the job it waits for finishes (``after_job_id``),
until ``held_until``, or, with neither, until its node comes back; then it is pending.
A job for an instance carries the instance's placement generation (``generation``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from collector import wire
from collector.errors import UnknownJob
from collector.models.base import Base, Taggable, Timestamps, UTCDateTime, register_taggable

WAITING_PLACEMENTS = f"queue_name = '{wire.SCHEDULER}' AND state = 'pending'"


@register_taggable
class QueuedJob(Taggable, Timestamps, Base):
    __tablename__ = "queued_jobs"
    __table_args__ = (
        Index("ix_queued_jobs_queue_state_worker", "queue_name", "state", "worker_id"),
        Index("ix_queued_jobs_resource_started", "resource_id", "started_at"),
        Index("ix_queued_jobs_state_heartbeat", "state", "heartbeat_at"),
        Index("ix_queued_jobs_state_finished", "state", "finished_at"),
        Index("ix_queued_jobs_state_redeliver", "state", "redeliver_at"),
        # The scheduler's waiting jobs only: the placements a job takes along (own_jobs).
        Index("ix_queued_jobs_waiting_placements", "id",
              postgresql_where=text(WAITING_PLACEMENTS), sqlite_where=text(WAITING_PLACEMENTS)),
    )
    prefix = "job"
    not_found = UnknownJob

    task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    queue_name: Mapped[str] = mapped_column(String(255), nullable=False)
    job_name: Mapped[str | None] = mapped_column(String(255))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict | None] = mapped_column()
    worker_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    finish_status: Mapped[str | None] = mapped_column(String(20))
    finish_message: Mapped[dict | None] = mapped_column()
    retry_max: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivery_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("queued_jobs.id"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    generation: Mapped[int | None] = mapped_column(Integer)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # End-to-end delivery: when the job's message is sent again if no agent took it by then,
    # and how many times it was (collector.services.jobs.redelivery).
    redeliver_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    redeliveries: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                              server_default="0")
    after_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("queued_jobs.id", name="fk_queued_jobs_after_job_id"), index=True)
