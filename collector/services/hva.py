"""``hva-collector``: what hypervisor agents ask and report.

Answer shapes follow the original (see ``collector.documents``); ids are canonical,
times ISO-8601 UTC. Every function runs inside the caller's transaction.

get_instance(instance_id) -> instance document (terminated instances included)
update_instance(instance_id, data) -> None; ``{"state": "terminated"}`` finalizes
finalize_instance(instance_id, terminated_at=None) -> None; idempotent
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from collector.documents.instances import instance_document, load_instance
from collector.errors import InvalidArgument
from collector.fields import NULL, check_fields
from collector.models import HostNode, Instance
from collector.scheduling import capacity
from collector.services import instance_lifecycle
from collector.states import INSTANCE_STATUSES, INSTANCE_TRANSITIONS, check_transition
from collector.timeutil import parse_time

# key -> accepted JSON types
UPDATABLE_INSTANCE_FIELDS: dict[str, tuple[type, ...]] = {
    "state": (str,),
    "status": (str,),
    "host_node_id": (str, NULL),
    "encrypted_password": (str, NULL),
    "password_will_be_deleted_at": (str, NULL),
    "runtime_config": (dict, NULL),
    "terminated_at": (str, NULL),
}


def get_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """The instance document the agent loads at the start of every job."""
    return instance_document(session, instance_id)


def update_instance(session: Session, instance_id: str, data: dict[str, Any]) -> None:
    """Apply an agent's report; state changes go through the instance state machine."""
    check_fields("instance", data, UPDATABLE_INSTANCE_FIELDS, Instance)
    inst = load_instance(session, instance_id)
    if data.get("state") == "terminated":
        instance_lifecycle.finalize_instance(
            session, inst, parse_time(data.get("terminated_at"), "terminated_at"))
        return
    if "terminated_at" in data:
        raise InvalidArgument("terminated_at is only accepted with state 'terminated'")
    if inst.state == "terminated":
        return  # a late report about an instance already gone changes nothing
    if "state" in data and check_transition("instance", INSTANCE_TRANSITIONS, inst.state,
                                            data["state"], terminal="terminated"):
        inst.state = data["state"]
    if "status" in data:
        if data["status"] not in INSTANCE_STATUSES:
            raise InvalidArgument(f"unknown instance status: {data['status']!r}")
        inst.status = data["status"]
    if "host_node_id" in data:
        host = data["host_node_id"]
        host_id = None if host is None else HostNode.by_cuuid(session, host).id
        if host_id != inst.host_node_id:
            # Stopped (NULL) or moved: the instance's capacity claim follows it.
            capacity.move_host(session, inst, host_id)
        inst.host_node_id = host_id
    if "encrypted_password" in data:
        inst.encrypted_password = data["encrypted_password"]
    if "password_will_be_deleted_at" in data:
        inst.password_will_be_deleted_at = parse_time(data["password_will_be_deleted_at"],
                                                      "password_will_be_deleted_at")
    if "runtime_config" in data:
        inst.runtime_config = data["runtime_config"]


def finalize_instance(session: Session, instance_id: str,
                      terminated_at: str | None = None) -> None:
    """Delete the instance's volumes (jobs sent after commit) and destroy it; idempotent."""
    when = parse_time(terminated_at, "terminated_at")
    instance_lifecycle.finalize_instance(session, load_instance(session, instance_id), when)

