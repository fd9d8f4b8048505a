"""Placement in batches: ``schedule_instances`` places several new instances in the
caller's one transaction, each answering exactly what ``schedule_instance`` answers.

Why: a placement transaction per instance pays its BEGIN/COMMIT, its reads and its row
locks every time, and all placements into one network queue behind that network's IP
cursor (a row lock held to the commit). A batch pays them once, and holds the cursor only
for its last phase:

1. the instances are read and locked in one query, in id order (two batches never
   deadlock on them);
2. each instance gets its host (the claim is one statement, written at once), volumes and
   dispatch, exactly as in ``schedule_instance`` but with no savepoint of its own;
3. then the vifs of every placed instance, with their MAC and IP leases, the network and
   MAC range rows locked once (``batch_memo``); then one flush writes every row of the
   batch, one statement per table and kind, right before the commit.

If any instance cannot be placed (no host, no storage) or a vif cannot be made in step 3
(addresses exhausted, an unknown network, ...), the whole batch is undone to its savepoint
and placed again one savepoint per instance with its vifs inside, as ``schedule_instance``
does: each instance still gets exactly its own outcome, a failure applied and answered.
That costs time only when hosts, storage, a network or a MAC range run out.

``schedule_launch`` places a bulk launch (``api.create_instances``): its instances in
batches of ``schedule_instances``, all inside one savepoint of the job's transaction, so
that when fewer than ``min_count`` are placed the savepoint is rolled back whole (no claim,
lease or dispatch left) and every instance is refused as a placement failure is applied.

Two batches claim hosts in the order their strategies pick them, so they may deadlock on
each other's hosts; PostgreSQL ends one, which the task layer runs again in place (the
race suite, 4 processes on a few hosts: a handful per 200 placements; the placement bench
on 200 hosts: none). Letting batches take turns instead (an advisory lock) ended those
deadlocks but halved the throughput of concurrent batches (231 to 111 placements/s).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from collector import ids
from collector.db import matches_any
from collector.errors import (
    ALL_ERRORS,
    InsufficientCapacity,
    InvalidArgument,
    PlacementError,
    UnknownInstanceID,
)
from collector.models import Instance
from collector.scheduling import batch_memo, reservations
from collector.scheduling.handlers import (
    PLACEMENT_FAILURES,
    create_missing_vifs,
    noop_answer,
    place_unguarded,
    refuse_new_instance,
    schedule_loaded,
)

MAX_BATCH = 500  # instances per call
MAX_LAUNCH = 1000  # instances of one bulk launch
LAUNCH_BATCH = 100  # a launch's instances per batch (its ORM rows held, then flushed, at once)
LAUNCH_KEY = "launch"  # request_params: the launch's first instance, its job's resource id


def schedule_instances(session: Session, instance_ids: list[str]) -> list[dict[str, Any]]:
    """``schedule_instance`` for each of ``instance_ids`` in this one transaction: the
    answers in the same order, each what ``schedule_instance`` answers for it (placed,
    failed with the failure applied, or noop; a repeated id is a noop, as a repeated job).
    An unknown id raises its typed error before anything is written."""
    if not isinstance(instance_ids, list) or len(instance_ids) > MAX_BATCH:
        raise InvalidArgument(f"instance_ids must be a list of at most {MAX_BATCH} ids")
    loaded = _load_instances(session, instance_ids)
    with batch_memo.opened(session):
        try:
            with session.begin_nested():
                done = _place_then_vifs(session, loaded)
        except PLACEMENT_FAILURES:
            batch_memo.forget(session)
            done = {raw: schedule_loaded(session, inst) for raw, inst in loaded.items()}
    answers, seen = [], set()
    for raw in (ids.raw_part(i, Instance.prefix) for i in instance_ids):
        inst = loaded[raw]
        answers.append(noop_answer(inst) if raw in seen else done[raw])
        seen.add(raw)
    return answers


def _place_then_vifs(session: Session, loaded: dict[str, Instance]) -> dict[str, Any]:
    later: list[Instance] = []
    # Claims and address guards are written at once; every other row waits for the flush.
    with session.no_autoflush:
        done = {raw: place_unguarded(session, inst, later) for raw, inst in loaded.items()}
        # The network and MAC range locks are taken here, to the commit; the addresses
        # are then reserved ahead, a statement for many (``reservations``).
        with reservations.pooled(session):
            for k, inst in enumerate(later):
                reservations.expect(session, len(later) - k)
                create_missing_vifs(session, inst, flush=False)
    session.flush()  # every row of the batch: one statement per table and kind
    return done


def _load_instances(session: Session, instance_ids: list[str]) -> dict[str, Instance]:
    """{raw uuid: instance} in id order, locked, with what placement reads."""
    raws = {ids.raw_part(i, Instance.prefix) for i in instance_ids}
    # One statement: a new instance has a volume or two and no vif (one per manual address).
    found = {inst.uuid: inst for inst in session.scalars(
        select(Instance).where(matches_any(session, Instance.uuid, raws)).order_by(Instance.id)
        .options(joinedload(Instance.image, innerjoin=True), joinedload(Instance.volumes),
                 joinedload(Instance.network_vifs))
        .with_for_update(of=Instance)).unique()}
    missing = sorted(raws - found.keys())
    if missing:
        raise UnknownInstanceID(f"unknown id '{Instance.prefix}-{missing[0]}'")
    return dict(sorted(found.items(), key=lambda item: item[1].id))


class _TooFew(Exception):
    """Rolls a launch's savepoint back: fewer than ``min_count`` could be placed."""


def schedule_launch(session: Session, instance_ids: list[str],
                    min_count: int) -> dict[str, Any]:
    """Place a bulk launch: at least ``min_count`` of ``instance_ids`` or none of them.

    Answers ``outcome`` ``placed`` (``placed``: how many; ``instances``: each one's answer,
    as ``schedule_instances``), ``noop`` (none was waiting: a repeated job), or ``failed``:
    every waiting instance ``terminated`` with the typed reason of the first failure,
    ``only N of min_count M could be placed``, and nothing placed, claimed or dispatched.
    Bad arguments or an unknown id raise their typed error before anything is written."""
    if (not isinstance(instance_ids, list) or not 1 <= len(instance_ids) <= MAX_LAUNCH
            or len(set(instance_ids)) != len(instance_ids)):
        raise InvalidArgument(f"instance_ids must be a list of 1..{MAX_LAUNCH} distinct ids")
    if (not isinstance(min_count, int) or isinstance(min_count, bool)
            or not 1 <= min_count <= len(instance_ids)):
        raise InvalidArgument(f"min_count must be within 1..{len(instance_ids)}")
    by_raw = _load_instances(session, instance_ids)  # locked to the commit, past a rollback
    loaded = [by_raw[ids.raw_part(i, Instance.prefix)] for i in instance_ids]
    if not any(inst.state == "scheduling" for inst in loaded):
        return {"outcome": "noop", "instances": [noop_answer(inst) for inst in loaded]}
    spare = len(instance_ids) - min_count  # failures the launch can afford
    answers: list[dict[str, Any]] = []
    try:
        with session.begin_nested():
            for start in range(0, len(instance_ids), LAUNCH_BATCH):
                answers += schedule_instances(session, instance_ids[start:start + LAUNCH_BATCH])
                if _count(answers, placed=False) > spare:
                    raise _TooFew  # why place the rest: min_count is out of reach
    except _TooFew:
        return _refuse_launch(session, loaded, answers, min_count)
    return {"outcome": "placed", "placed": _count(answers, placed=True), "instances": answers}


def _count(answers: list[dict[str, Any]], placed: bool) -> int:
    return sum((answer["outcome"] == "placed") == placed for answer in answers)


def _refuse_launch(session: Session, loaded: list[Instance],
                   answers: list[dict[str, Any]], min_count: int) -> dict[str, Any]:
    """Every instance still waiting refused with the first failure's type."""
    first = next((a for a in answers if a["outcome"] == "failed"), None)
    error = ALL_ERRORS.get(first["error_type"], InsufficientCapacity) if first \
        else InsufficientCapacity
    if not issubclass(error, PLACEMENT_FAILURES):
        error = PlacementError
    placed = _count(answers, placed=True)
    why = f": {first['message']}" if first else ""
    exc = error(f"only {placed} of min_count {min_count} could be placed{why}"[:900])
    refused = [refuse_new_instance(session, inst, exc) if inst.state == "scheduling"
               else noop_answer(inst) for inst in loaded]
    return {"outcome": "failed", "error_type": exc.error_type, "message": exc.message,
            "placed": 0, "instances": refused}
