"""What a batch of placements in one transaction reads once: the network rows it locked
(with their DHCP ranges) and the MAC ranges it locked (with the next address to try).

Only ``handlers.schedule_instances`` opens a batch; outside one every placement reads and
locks afresh. The memo is valid while the locks it records are held, so it lives in the
session for the batch and is forgotten whenever a placement's savepoint rolls back (a
row lock taken inside a rolled-back savepoint is released, and a cursor moved there is
undone).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

KEY = "placement_batch"


@contextmanager
def opened(session: Session) -> Iterator[None]:
    """Memoise locked rows for the placements run inside this block."""
    session.info[KEY] = {}
    try:
        yield
    finally:
        session.info.pop(KEY, None)


def memo(session: Session) -> dict[str, Any] | None:
    """The batch memo (a plain dict owned by its readers), or None outside a batch."""
    return session.info.get(KEY)


def forget(session: Session) -> None:
    """Drop everything memoised (after a savepoint rolled back)."""
    held = session.info.get(KEY)
    if held is not None:
        held.clear()
