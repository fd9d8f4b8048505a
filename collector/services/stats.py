"""The figures operators ask for: job ledger per queue, outbox backlog, node states
(``collector stats``), and each node's liveness and capacity used of what it offers
(``collector nodes``; a host's cpu and memory after its allocation ratios).

Read-only grouped counts and one row per node; cheap enough to poll.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.db import db_now
from collector.models import HostNode, Instance, NodeState, OutboxMessage, QueuedJob, StorageNode
from collector.scheduling import ratios
from collector.scheduling.placement_config import scheduler_config
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


def _ratio(host_milli: int | None, default_milli: int) -> tuple[int, dict[str, Any]]:
    """(the ratio in thousandths, how ``collector nodes`` shows it)."""
    milli = default_milli if host_milli is None else host_milli
    return milli, {"ratio": ratios.ratio_of(milli),
                   "source": "default" if host_milli is None else "host"}


def host_overview(session: Session, host_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Hosts (those of ``host_ids``, or all), by node id: liveness, the scheduling flag,
    and capacity used of what each offers (``total``: physical x allocation ratio for cpu
    and memory; ``physical`` and ``allocation_ratios`` say how)."""
    config = scheduler_config()
    stmt = (select(HostNode.uuid, HostNode.node_id, HostNode.scheduling_enabled,
                   HostNode.hypervisor, HostNode.offering_cpu_cores, HostNode.used_cpu_cores,
                   HostNode.cpu_allocation_ratio_milli, HostNode.offering_memory_size,
                   HostNode.used_memory_size, HostNode.ram_allocation_ratio_milli,
                   HostNode.offering_disk_space_mb, HostNode.used_disk_bytes,
                   NodeState.state, NodeState.last_ping_at)
            .outerjoin(NodeState, NodeState.node_id == HostNode.node_id)
            .order_by(HostNode.node_id))
    if host_ids is not None:
        stmt = stmt.where(HostNode.id.in_(host_ids))
    out = []
    for h in session.execute(stmt):
        cpu_milli, cpu = _ratio(h.cpu_allocation_ratio_milli, config.cpu_allocation_ratio_milli)
        ram_milli, ram = _ratio(h.ram_allocation_ratio_milli, config.ram_allocation_ratio_milli)
        out.append({
            "id": ids.canonical(HostNode.prefix, h.uuid), "node_id": h.node_id, "kind": "host",
            **_liveness(h), "scheduling_enabled": h.scheduling_enabled,
            "hypervisor": h.hypervisor,
            "cpu_cores": {"used": h.used_cpu_cores,
                          "total": ratios.offered(h.offering_cpu_cores, cpu_milli)},
            "memory_mb": {"used": h.used_memory_size,
                          "total": ratios.offered(h.offering_memory_size, ram_milli)},
            "disk_mb": {"used": h.used_disk_bytes // MB, "total": h.offering_disk_space_mb},
            "physical": {"cpu_cores": h.offering_cpu_cores,
                         "memory_mb": h.offering_memory_size,
                         "disk_mb": h.offering_disk_space_mb},
            "allocation_ratios": {"cpu": cpu, "ram": ram}})
    return out


def _liveness(row: Any) -> dict[str, Any]:
    return {"state": row.state or "unknown",
            "last_heartbeat": to_iso(row.last_ping_at) if row.last_ping_at else None}


def node_overview(session: Session) -> list[dict[str, Any]]:
    """Every host and storage node: liveness (state, last heartbeat) and capacity used."""
    storage = session.execute(
        select(StorageNode.uuid, StorageNode.node_id, StorageNode.offering_disk_space_mb,
               StorageNode.used_disk_bytes, NodeState.state, NodeState.last_ping_at)
        .outerjoin(NodeState, NodeState.node_id == StorageNode.node_id)
        .order_by(StorageNode.node_id))
    return [*host_overview(session), *(
        {"id": ids.canonical(StorageNode.prefix, s.uuid), "node_id": s.node_id,
         "kind": "storage", **_liveness(s),
         "disk_mb": {"used": s.used_disk_bytes // MB, "total": s.offering_disk_space_mb}}
        for s in storage)]
