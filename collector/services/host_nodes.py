"""``hva-collector`` methods about host nodes.

get_host_nodes_index() -> [host node id]
get_host_node(host_node_uuid) -> host API document (no node_id; status added)
switch_instance_host_node(instance_uuid, dest_node_id, generation=None) -> true: the
    instance now runs on that node. A ``migrating`` instance: the destination's agent
    reports its copy running, with its migration job's generation
    (``collector.scheduling.migration.switch``: claims swapped, generation + 1, the source
    cleaned up; StalePlacement when that migration is over); otherwise a fact recorded (its
    capacity claim follows it, forced)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.documents.resources import host_node_api_document
from collector.errors import InvalidStateTransition
from collector.models import HostNode, Instance
from collector.scheduling import capacity, migration


def get_host_nodes_index(session: Session) -> list[str]:
    return [f"hn-{u}" for u in session.scalars(select(HostNode.uuid).order_by(HostNode.id))]


def get_host_node(session: Session, host_node_uuid: str) -> dict[str, Any]:
    return host_node_api_document(HostNode.by_cuuid(session, host_node_uuid))


def switch_instance_host_node(session: Session, instance_uuid: str, dest_node_id: str,
                              generation: int | None = None) -> bool:
    inst = Instance.by_cuuid(session, instance_uuid, for_update=True)
    host = HostNode.by_node_id(session, dest_node_id)
    if inst.terminated_at is not None:
        raise InvalidStateTransition(f"{instance_uuid} is terminated: it cannot move")
    if inst.state == "migrating" or generation is not None:
        return migration.switch(session, inst, host, generation)
    capacity.move_host(session, inst, host.id)  # the claim moves with it (forced: it moved)
    inst.host_node_id = host.id
    return True
