"""``node-collector``: agent heartbeats and the liveness of every node.

notify(node_id, boot_token) -> None: a heartbeat (agents send it one-shot every 10 s);
    the node becomes ``online``; a changed boot token means the agent restarted and
    publishes ``node_collector/restarted`` (the original never noticed restarts); a node
    back from ``timeout``/``offline`` gets the jobs held for its return (the cleanups of
    instances moved off it while it was away: ``collector.db.job_states``).
list_nodes() -> [{node_id, state, boot_token, last_ping_at, ...}]
sweep_node_states(): ``online -> timeout`` after 20 s of silence, ``-> offline`` after
    40 s, row deleted after 320 s; computed on the database's clock; events
    ``node_collector/timedout|offline|killed``. Safe to run twice.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from collector import wire
from collector.db import db_now, dialect_name, job_states, outbox, settings_of, skip_locked
from collector.errors import InvalidArgument
from collector.models import NodeState

NODE_ID = re.compile(r"^[a-z][a-z0-9_-]*\.[A-Za-z0-9._:-]+$")


def notify(session: Session, node_id: str, boot_token: str) -> None:
    """Record a heartbeat of ``node_id``."""
    if not NODE_ID.match(node_id) or len(node_id) > 80:
        raise InvalidArgument(f"invalid node id: {node_id!r}")
    if not boot_token or len(boot_token) > 64:
        raise InvalidArgument("boot_token must be 1 to 64 characters")
    now = db_now(session)
    # The first heartbeats of a node may arrive together: one inserts, the others wait for
    # its commit and then find the row (ON CONFLICT DO NOTHING), so one ``monitored`` event.
    created = session.execute(
        _insert(session, NodeState).values(
            node_id=node_id, boot_token=boot_token, state="online", last_ping_at=now,
            created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[NodeState.node_id])
        .returning(NodeState.id)).first()
    row = session.scalars(select(NodeState).where(NodeState.node_id == node_id)
                          .with_for_update().execution_options(populate_existing=True)).one()
    if created is not None:
        outbox.events.publish(session, wire.NodeEvent.MONITORED, [_doc(row)])
        job_states.release_for_node(session, node_id)  # back after its row was dropped
        return
    if row.boot_token != boot_token:
        row.boot_token = boot_token
        outbox.events.publish(session, wire.NodeEvent.RESTARTED, [_doc(row)])
    if row.state != "online":
        job_states.release_for_node(session, node_id)  # back: what waited for it is sent
    row.state = "online"
    row.last_ping_at = now


def _insert(session: Session, table: type) -> Any:
    """The dialect's INSERT (both PostgreSQL's and SQLite's know ON CONFLICT)."""
    if dialect_name(session) == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def list_nodes(session: Session) -> list[dict[str, Any]]:
    """Every known node's liveness row."""
    return [_doc(row) for row in session.scalars(select(NodeState).order_by(NodeState.node_id))]


def sweep_node_states(session: Session) -> dict[str, list[str]]:
    """Age silent nodes; returns the node ids that changed, per transition."""
    settings = settings_of(session)
    now = db_now(session)
    stmt = select(NodeState).where(
        NodeState.last_ping_at < now - timedelta(seconds=settings.node_timeout_sec))
    stmt = skip_locked(session, stmt)
    changed: dict[str, list[str]] = {"timedout": [], "offline": [], "killed": []}
    for row in session.scalars(stmt):
        silent = (now - row.last_ping_at).total_seconds()
        if row.state not in ("timeout", "offline"):
            row.state = "timeout"
            changed["timedout"].append(row.node_id)
        if silent > settings.node_offline_sec and row.state != "offline":
            row.state = "offline"
            changed["offline"].append(row.node_id)
        if silent > settings.node_kill_sec:
            changed["killed"].append(row.node_id)
            outbox.events.publish(session, wire.NodeEvent.KILLED, [_doc(row)])
            session.delete(row)
    for kind, event in (("timedout", wire.NodeEvent.TIMEDOUT), ("offline", wire.NodeEvent.OFFLINE)):
        for node_id in changed[kind]:
            outbox.events.publish(session, event, [node_id])
    return changed


def _doc(row: NodeState) -> dict[str, Any]:
    out = row.column_values()
    out.pop("id", None)
    return out
