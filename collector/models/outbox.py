"""The transactional outbox: messages to send once the writing transaction commits.

A row is written in the caller's transaction (``collector.db.outbox``); the relay
publishes it after the commit and stamps ``sent_at``; a periodic sweep publishes rows a
crash left unsent. ``kind`` says how the row is published:

- ``job``: a Celery task ``<endpoint>.<job_name>`` on the per-node queue, task id fixed
  at write time (so a republish is recognised by the job ledger);
- ``event``: an event message on the topic exchange, routing key ``<event>.<sender>``;
- ``task``: a plain Celery task to a named queue.

The relay claims rows (``claimed_until``) in a short transaction, publishes them outside
any transaction, then stamps ``sent_at``. ``attempts`` counts publishes that reached the
broker (a broker outage counts none); a row that fails on its own that many times is
stamped ``failed_at`` and parked as a dead letter (``collector dead-letters``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from collector.models.base import Base, UTCDateTime
from collector.timeutil import utcnow


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "sent_at", "created_at"),
        # The event re-send pass reads only the rows still waiting for their receipt.
        Index("ix_outbox_awaiting_receipt", "sent_at", postgresql_where=text("awaiting_receipt"),
              sqlite_where=text("awaiting_receipt")),
    )

    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    task_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    routing_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    payload: Mapped[dict] = mapped_column(nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An event's or an event handler's message, not processed yet by its receiver (cleared
    # in the transaction that writes the receipt): re-sent while set
    # (``collector.services.event_receipts``).
    awaiting_receipt: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                   server_default=false())
