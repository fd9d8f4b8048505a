"""Placement in batches: ``schedule_instances`` places several new instances in the
caller's one transaction, each answering exactly what ``schedule_instance`` answers.

Why: a placement transaction per instance pays its BEGIN/COMMIT, its reads and its row
locks every time, and all placements into one network queue behind that network's IP
cursor (a row lock held to the commit). A batch pays them once, and holds the cursor only
for its last phase:

1. the instances are read and locked in one query, in id order (two batches never
   deadlock on them);
2. each instance gets its host, volumes and dispatch in its own savepoint, exactly as in
   ``schedule_instance``; a placement failure is applied and answered there;
3. then the vifs of every placed instance, with their MAC and IP leases, the network and
   MAC range rows locked once (``batch_memo``), right before the commit.

If a vif cannot be made in step 3 (addresses exhausted, an unknown network, ...), the
whole batch is undone to its savepoint and placed again one savepoint per instance with
its vifs inside, as ``schedule_instance`` does: each instance still gets exactly its own
outcome. That costs time only when a network or MAC range runs out.

Two batches claim hosts in the order their strategies pick them, so they may deadlock on
each other's hosts; PostgreSQL ends one, which the task layer runs again in place (the
race suite, 4 processes on a few hosts: a handful per 200 placements; the placement bench
on 200 hosts: none). Letting batches take turns instead (an advisory lock) ended those
deadlocks but halved the throughput of concurrent batches (231 to 111 placements/s).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from collector import ids
from collector.errors import InvalidArgument, UnknownInstanceID
from collector.models import Instance
from collector.scheduling import batch_memo
from collector.scheduling.handlers import (
    PLACEMENT_FAILURES,
    create_missing_vifs,
    noop_answer,
    schedule_loaded,
)

MAX_BATCH = 500  # instances per call


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
    done = {raw: schedule_loaded(session, inst, vifs_later=later)
            for raw, inst in loaded.items()}
    with session.no_autoflush:  # address guards are written at once; vif rows wait
        for inst in later:  # the network and MAC range locks are taken here, to the commit
            create_missing_vifs(session, inst, flush=False)
    session.flush()  # every vif and lease row of the batch: one INSERT per table
    return done


def _load_instances(session: Session, instance_ids: list[str]) -> dict[str, Instance]:
    """{raw uuid: instance} in id order, locked, with what placement reads."""
    raws = {ids.raw_part(i, Instance.prefix) for i in instance_ids}
    found = {inst.uuid: inst for inst in session.scalars(
        select(Instance).where(Instance.uuid.in_(raws)).order_by(Instance.id)
        .options(joinedload(Instance.image, innerjoin=True), selectinload(Instance.volumes),
                 selectinload(Instance.network_vifs))
        .with_for_update(of=Instance))}
    missing = sorted(raws - found.keys())
    if missing:
        raise UnknownInstanceID(f"unknown id '{Instance.prefix}-{missing[0]}'")
    return dict(sorted(found.items(), key=lambda item: item[1].id))
