"""Addresses a batch of placements reserves ahead, a statement for many.

Outside a batch every automatic IP and MAC address costs one guarded INSERT (``ip_leases``
and ``mac_leases`` are unique: the insert that wins an address takes it). Inside the vif
phase of a batch (``batch.schedule_instances``), the network and MAC range rows are
locked to the commit, so the addresses that phase will take are known in advance: the next
candidates in the strategy's own search order. ``take`` then inserts the guard rows of as
many candidates as the batch still has vifs to make, in one statement, and hands them out
one by one; a candidate already taken (a manual lease, a lease made before the cursor
wrapped) is simply not inserted, exactly as the single insert would have lost it.

What the batch did not use is deleted when the phase ends (``pooled``), and the network
cursors are written once, at the last address handed out, as one allocation after another
would have left them. A reservation that finds fewer than half of its candidates free
marks the pool ``dry``: the rest of the batch searches as outside a batch (the database's
first free address), so a crowded network never costs a scan of its candidates in Python.

An exception in the phase leaves everything to the savepoint the batch rolls back (its
guard rows go with it) and forgets the pools.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from collector.scheduling import batch_memo

KEY = "reservations"


@dataclass
class Pool:
    """The guard rows one network (or MAC range set) reserved and has not handed out."""

    finish: Callable[[Session, list[int]], None]  # deletes the leftovers, writes a cursor
    free: deque[int] = field(default_factory=deque)
    after: Any = None  # where the last reservation's candidates ended (None: not begun)
    dry: bool = False


@dataclass
class Reservations:
    """The pools of one vif phase, and how many vifs the phase still expects to make."""

    expected: int = 1
    pools: dict[Any, Pool] = field(default_factory=dict)


@contextmanager
def pooled(session: Session) -> Iterator[Reservations]:
    """Reserve addresses ahead inside this block (a batch's vif phase, its network and MAC
    range rows locked to the commit); leftovers are released at its normal end."""
    held = batch_memo.memo(session)
    if held is None:
        raise RuntimeError("reservations.pooled needs an open placement batch")
    current = held[KEY] = Reservations()
    try:
        yield current
    finally:
        held.pop(KEY, None)
    for pool in current.pools.values():  # only after a normal end: a failure rolls back
        pool.finish(session, list(pool.free))


def expect(session: Session, vifs: int) -> None:
    """The phase still has about ``vifs`` vifs to make: the size of the next reservation."""
    current = _current(session)
    if current is not None:
        current.expected = max(1, vifs)


Reserve = Callable[[int, Any], tuple[list[int], int, Any]]


def take(session: Session, key: Any, reserve: Reserve,
         finish: Callable[[Session, list[int]], None]) -> int | None:
    """The next address reserved under ``key``; None outside a pooled block, when only one
    more is expected, or once the pool ran dry (the caller then allocates as it does
    outside a batch).

    ``reserve(n, after)`` inserts the guard rows of the next ``n`` candidates past
    ``after`` (None: from the strategy's own start) in one statement, and answers the
    addresses inserted (in search order), how many candidates it tried, and where they
    ended."""
    current = _current(session)
    if current is None:
        return None
    pool = current.pools.get(key)
    if not (pool and pool.free) and current.expected < 2:
        return None  # one address: the caller's single guarded insert is as cheap
    if pool is None:
        pool = current.pools[key] = Pool(finish)
    if not pool.free and not pool.dry:
        got, tried, pool.after = reserve(current.expected, pool.after)
        pool.free.extend(got)
        pool.dry = 2 * len(got) < tried or not got
    return pool.free.popleft() if pool.free else None


def _current(session: Session) -> Reservations | None:
    held = batch_memo.memo(session)
    return held.get(KEY) if held is not None else None
