"""The figures operators ask for: job ledger per queue, outbox backlog, node states
(``collector stats``), and each node's liveness and capacity used (``collector nodes``).

Read-only grouped counts and one row per node; cheap enough to poll.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.db import db_now
from collector.models import HostNode, Instance, NodeState, OutboxMessage, QueuedJob, StorageNode
from collector.timeutil import to_iso

MB = 1 << 20


def collector_stats(session: Session) -> dict[str, Any]:
    """``{"jobs": {queue: {held, pending, running, succeeded, failed, cancelled}}, "outbox": {...},
    "nodes": {state: count}, "instances": {state: count}}``."""
    outcome = case(
        (QueuedJob.state != "finished", QueuedJob.state),
        (QueuedJob.finish_status == "success", "succeeded"),
        (QueuedJob.finish_status == "fail", "failed"),
        (QueuedJob.finish_status == "cancel", "cancelled"),
        else_="finished",
    )
    jobs: dict[str, dict[str, int]] = {}
    for queue, state, count in session.execute(
            select(QueuedJob.queue_name, outcome, func.count())
            .group_by(QueuedJob.queue_name, outcome).order_by(QueuedJob.queue_name)):
        counts = jobs.setdefault(queue, {"held": 0, "pending": 0, "running": 0,
                                         "succeeded": 0, "failed": 0, "cancelled": 0})
        counts[state] = counts.get(state, 0) + count
    unsent, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.sent_at.is_(None))).one()
    age = None if oldest is None else max(0.0, (db_now(session) - oldest).total_seconds())
    nodes = dict(session.execute(select(NodeState.state, func.count())
                                 .group_by(NodeState.state)).all())
    instances = dict(session.execute(select(Instance.state, func.count())
                                     .group_by(Instance.state)).all())
    return {"jobs": jobs, "outbox": {"unsent": unsent, "oldest_unsent_age_sec": age},
            "nodes": nodes, "instances": instances}


def node_overview(session: Session) -> list[dict[str, Any]]:
    """Every host and storage node: liveness (state, last heartbeat) and capacity used."""
    states = {r.node_id: r for r in session.execute(
        select(NodeState.node_id, NodeState.state, NodeState.last_ping_at))}
    hosts = session.execute(select(
        HostNode.uuid, HostNode.node_id, HostNode.scheduling_enabled, HostNode.hypervisor,
        HostNode.offering_cpu_cores, HostNode.used_cpu_cores, HostNode.offering_memory_size,
        HostNode.used_memory_size, HostNode.offering_disk_space_mb, HostNode.used_disk_bytes,
    ).order_by(HostNode.node_id))
    storage = session.execute(select(
        StorageNode.uuid, StorageNode.node_id, StorageNode.offering_disk_space_mb,
        StorageNode.used_disk_bytes).order_by(StorageNode.node_id))
    out: list[dict[str, Any]] = []

    def liveness(node_id: str | None) -> dict[str, Any]:
        row = states.get(node_id or "")
        return {"state": row.state if row else "unknown",
                "last_heartbeat": to_iso(row.last_ping_at) if row else None}

    for h in hosts:
        out.append({"id": ids.canonical(HostNode.prefix, h.uuid), "node_id": h.node_id,
                    "kind": "host", **liveness(h.node_id),
                    "scheduling_enabled": h.scheduling_enabled, "hypervisor": h.hypervisor,
                    "cpu_cores": {"used": h.used_cpu_cores, "total": h.offering_cpu_cores},
                    "memory_mb": {"used": h.used_memory_size, "total": h.offering_memory_size},
                    "disk_mb": {"used": h.used_disk_bytes // MB,
                                "total": h.offering_disk_space_mb}})
    for s in storage:
        out.append({"id": ids.canonical(StorageNode.prefix, s.uuid), "node_id": s.node_id,
                    "kind": "storage", **liveness(s.node_id),
                    "disk_mb": {"used": s.used_disk_bytes // MB,
                                "total": s.offering_disk_space_mb}})
    return out
