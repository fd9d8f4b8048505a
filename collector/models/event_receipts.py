"""Event receipts: what made an event's delivery exactly once in effect.

One row per (event id, handler): ``handler`` is ``dispatch`` for the dispatcher
(``events.deliver``, written with the handler outbox rows it fans the event out to) or the
handler task's name (``events.<role>.<handler>``, written in the handler's own
transaction, before the domain handler runs). A copy of a message whose receipt exists is
a no-op; a message without one is re-sent (``collector.services.event_receipts``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.models.base import Base, UTCDateTime
from collector.timeutil import utcnow

DISPATCH = "dispatch"  # the handler name of the dispatcher's receipt


class EventReceipt(Base):
    __tablename__ = "event_receipts"
    __table_args__ = (
        Index("ix_event_receipts_event_handler", "event_id", "handler", unique=True),
        Index("ix_event_receipts_processed_at", "processed_at"),
    )

    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    handler: Mapped[str] = mapped_column(String(255), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                   nullable=False)
