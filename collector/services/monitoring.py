"""``hva-collector`` methods for the hosts' monitors.

get_instance_monitor_data(node_id) -> instances the host's monitor watches
get_resource_monitor_data(node_id), get_resource_monitor_ids(node_id)
get_external_monitor_target_host_nodes() -> ids of schedulable hosts online or offline
    (hosts timing out are left to settle, as in the original)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.documents import monitors
from collector.models import HostNode, NodeState


def get_instance_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    return monitors.instance_monitor_data(session, node_id)


def get_resource_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    return monitors.resource_monitor_data(session, node_id)


def get_resource_monitor_ids(session: Session, node_id: str) -> list[str]:
    return monitors.resource_monitor_ids(session, node_id)


def get_external_monitor_target_host_nodes(session: Session) -> list[str]:
    rows = session.execute(
        select(HostNode.uuid, NodeState.state)
        .outerjoin(NodeState, NodeState.node_id == HostNode.node_id)
        .where(HostNode.scheduling_enabled.is_(True)).order_by(HostNode.id))
    return [f"hn-{u}" for u, state in rows if state in (None, "online", "offline")]
