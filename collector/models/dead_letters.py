"""Dead letters: messages the Collector gave up on, kept for an operator to replay.

Two sources end here, never silently dropped:

- ``task``: a Celery message (an event's dispatch or one role's handler) whose task still
  failed after its retries (transient errors) or failed for good (any other error). The
  row holds the task's name, queue and arguments, so a replay sends the same message again.
- ``outbox``: an outbox row the relay could not publish after its attempts; a replay hands
  the row back to the relay (``outbox_id``).

``replayed_at``/``replay_count`` record replays; a replayed message that fails again is
parked again as a new row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.models.base import Base, UTCDateTime
from collector.timeutil import utcnow

DEAD_LETTER_SOURCES = ("task", "outbox")


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_replayed_created", "replayed_at", "created_at"),)

    source: Mapped[str] = mapped_column(String(16), nullable=False)
    task_name: Mapped[str] = mapped_column(String(255), nullable=False)
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    args: Mapped[list] = mapped_column(nullable=False)
    kwargs: Mapped[dict] = mapped_column(nullable=False)
    outbox_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_type: Mapped[str] = mapped_column(String(255), nullable=False)
    error: Mapped[str] = mapped_column(String(2000), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    replay_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
