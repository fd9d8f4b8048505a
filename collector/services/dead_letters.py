"""Dead letters: park what failed for good, list it, replay it (``collector dead-letters``).

park(session, ...) -> the new row's id
list_dead_letters(session, include_replayed=False, limit=100) -> [dead letter document],
    oldest first
replay(session, dead_letter_id) -> document: a ``task`` letter is sent again through the
    outbox (the relay, or within seconds the outbox sweep, publishes it); an ``outbox``
    letter hands its row back to the relay with fresh attempts
replay_pending(session) -> ids replayed: every letter not replayed yet

A replayed message that fails again is parked again (a new row), so nothing is lost by
replaying too early. Replay locks the row: two operators replaying at once send it once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.db import outbox
from collector.errors import InvalidArgument, UnknownDeadLetter
from collector.models import DEAD_LETTER_SOURCES, DeadLetter, OutboxMessage
from collector.timeutil import to_iso, utcnow


def park(session: Session, *, source: str, task_name: str, queue: str | None, task_id: str,
         args: list, kwargs: dict, error_type: str, error: str, attempts: int = 1,
         outbox_id: int | None = None) -> int:
    if source not in DEAD_LETTER_SOURCES:
        raise InvalidArgument(f"unknown dead letter source {source!r}")
    row = DeadLetter(source=source, task_name=task_name, queue=queue, task_id=task_id,
                     args=list(args), kwargs=dict(kwargs), error_type=error_type[:255],
                     error=error[:2000], attempts=attempts, outbox_id=outbox_id,
                     replay_count=0)
    session.add(row)
    session.flush()
    return row.id


def document(row: DeadLetter) -> dict[str, Any]:
    doc = row.column_values()
    for key in ("created_at", "replayed_at"):
        doc[key] = to_iso(getattr(row, key))
    return doc


def list_dead_letters(session: Session, include_replayed: bool = False,
                      limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(DeadLetter).order_by(DeadLetter.id).limit(limit)
    if not include_replayed:
        stmt = stmt.where(DeadLetter.replayed_at.is_(None))
    return [document(row) for row in session.scalars(stmt)]


def replay(session: Session, dead_letter_id: int) -> dict[str, Any]:
    row = session.scalars(select(DeadLetter).where(DeadLetter.id == dead_letter_id)
                          .with_for_update()).first()
    if row is None:
        raise UnknownDeadLetter(f"unknown dead letter {dead_letter_id}")
    if row.source == "outbox":
        _hand_back_outbox_row(session, row)
    else:
        # An event's letter (its id travels along) is re-sent until it is handled.
        outbox.write(session, kind="task", name=row.task_name, queue=row.queue,
                     payload={"args": list(row.args), "kwargs": dict(row.kwargs),
                              "options": {}},
                     awaiting_receipt="event_id" in (row.kwargs or {}))
    row.replayed_at = utcnow()
    row.replay_count += 1
    return document(row)


def replay_pending(session: Session) -> list[int]:
    ids = list(session.scalars(select(DeadLetter.id).where(DeadLetter.replayed_at.is_(None))
                               .order_by(DeadLetter.id)))
    for dead_letter_id in ids:
        replay(session, dead_letter_id)
    return ids


def _hand_back_outbox_row(session: Session, row: DeadLetter) -> None:
    """The relay takes the row again with fresh attempts (unless it was sent meanwhile)."""
    outbox = session.get(OutboxMessage, row.outbox_id, with_for_update=True) \
        if row.outbox_id is not None else None
    if outbox is None:
        raise UnknownDeadLetter(f"dead letter {row.id}: outbox row {row.outbox_id} is gone")
    if outbox.sent_at is None:
        outbox.attempts, outbox.last_error = 0, None
        outbox.failed_at = outbox.claimed_until = None
