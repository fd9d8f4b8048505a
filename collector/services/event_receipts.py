"""Event receipts: each event dispatched once, each handler run once, what was lost re-sent.

record(session, event_id, handler, message_id) -> bool: write the receipt in the caller's
    transaction; False when it exists (the message is a repeat: do nothing). Two copies at
    once on PostgreSQL: the second waits for the first's transaction (the unique index) and
    sees its receipt once it commits, or writes its own if it rolled back. The message's
    outbox row (``message_id``) stops waiting for a receipt (``awaiting_receipt``), in the
    same transaction.
handler_message_id(event_id, handler) -> the fixed task id of a handler's message, so a
    dispatcher that runs twice writes the same message.
any_to_resend(session, older_than, retention) -> whether a pass has work (a read).
resend_events(session, older_than, retention, limit) -> outbox row ids handed back to the
    relay: messages sent more than ``older_than`` seconds ago still waiting for their
    receipt (an event not dispatched, a handler message not handled), not parked as dead
    letters, created within ``retention``. It reads the waiting rows only (a partial
    index), however many events the outbox keeps.
purge_receipts(session, older_than, limit) -> how many receipts older than that were
    deleted.

A re-sent row keeps its task id: it is unstamped (``sent_at`` NULL) and published again by
the relay like any unsent row. One row per message, the relay's claims, attempts and dead
letters apply as they do to a first send, and ``sent_at`` is the time of the last send: the
next pass re-sends it only ``older_than`` seconds later. A row is re-sent while it is
younger than ``retention`` (afterwards it stays sent, and the retention purge drops it).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.orm import Session

from collector.db import insert_if_absent, skip_locked
from collector.models import DeadLetter, EventReceipt, OutboxMessage
from collector.timeutil import utcnow


def handler_message_id(event_id: str, handler: str) -> str:
    """The fixed task id of ``handler``'s message for ``event_id`` (fits the outbox's 64)."""
    digest = hashlib.sha256(f"{event_id}\n{handler}".encode()).hexdigest()
    return f"evh-{digest[:40]}"


def record(session: Session, event_id: str, handler: str,
           message_id: str | None = None) -> bool:
    """Write the receipt of ``handler`` for ``event_id``; False when it was there already.
    The outbox row of the message being processed (``message_id``, its task id) stops
    waiting for a receipt, in the same transaction."""
    written = insert_if_absent(session, EventReceipt, ["event_id", "handler"],
                               event_id=event_id, handler=handler,
                               processed_at=utcnow()) is not None
    if message_id is not None:
        session.execute(update(OutboxMessage).where(
            OutboxMessage.task_id == message_id, OutboxMessage.awaiting_receipt.is_(True))
            .values(awaiting_receipt=False))
    return written


def any_to_resend(session: Session, older_than: float, retention: float) -> bool:
    """Whether ``resend_events`` would take a row (a read: no lock, no write)."""
    return session.scalar(_unconfirmed(older_than, retention).with_only_columns(
        OutboxMessage.id).limit(1)) is not None


def resend_events(session: Session, older_than: float, retention: float,
                  limit: int = 200) -> list[int]:
    stmt = _unconfirmed(older_than, retention).order_by(OutboxMessage.sent_at, OutboxMessage.id) \
        .limit(limit)
    rows = list(session.scalars(skip_locked(session, stmt)))
    for row in rows:
        row.sent_at = row.claimed_until = None
    return [row.id for row in rows]


def _unconfirmed(older_than: float, retention: float) -> Select:
    """Outbox rows of event messages sent more than ``older_than`` seconds ago, created
    within ``retention``, still waiting for their receipt and not dead letters (the partial
    index ``ix_outbox_awaiting_receipt`` holds only the rows still waiting)."""
    now = utcnow()
    return select(OutboxMessage).where(
        OutboxMessage.awaiting_receipt.is_(True),
        OutboxMessage.sent_at.is_not(None),
        OutboxMessage.sent_at <= now - timedelta(seconds=older_than),
        OutboxMessage.created_at >= now - timedelta(seconds=retention),
        OutboxMessage.failed_at.is_(None),
        ~exists().where(DeadLetter.task_id == OutboxMessage.task_id))


def purge_receipts(session: Session, older_than: float, limit: int = 10_000) -> int:
    cutoff = utcnow() - timedelta(seconds=older_than)
    ids = select(EventReceipt.id).where(EventReceipt.processed_at < cutoff) \
        .order_by(EventReceipt.id).limit(limit)
    result: Any = session.execute(delete(EventReceipt).where(EventReceipt.id.in_(ids)))
    return int(result.rowcount or 0)
