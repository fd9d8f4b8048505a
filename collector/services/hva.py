"""``hva-collector``: what hypervisor agents ask and report.

Answer shapes follow the original (see ``collector.documents``); ids are canonical,
times ISO-8601 UTC. Every function runs inside the caller's transaction.

get_instance(instance_id) -> instance document (terminated instances included)
update_instance(instance_id, data) -> None; ``{"state": "terminated"}`` finalizes. Fencing:
    ``data["generation"]``, when given, must be the instance's ``placement_generation``
    (else StalePlacement: the sender's copy is of an earlier placement, nothing written);
    once the instance was placed more than once, a report of its state or host must
    carry it (PlacementGenerationRequired).
finalize_instance(instance_id, terminated_at=None) -> None; idempotent

Writers lock the instance row before reading it, so concurrent reports on one instance
apply one after the other (each sees what the previous one committed).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, Update, bindparam, cast, select, update
from sqlalchemy.orm import Session

from collector import ids
from collector.db.compiled import Query, fetch, iso_time
from collector.documents.instances import instance_document, load_instance
from collector.errors import InvalidArgument, PlacementGenerationRequired, StalePlacement
from collector.fields import NULL, check_fields
from collector.models import HostNode, Instance
from collector.scheduling import capacity, teardown
from collector.states import INSTANCE_STATUSES, INSTANCE_TRANSITIONS, check_transition
from collector.timeutil import parse_time, to_iso

# key -> accepted JSON types
UPDATABLE_INSTANCE_FIELDS: dict[str, tuple[type, ...]] = {
    "state": (str,),
    "status": (str,),
    "host_node_id": (str, NULL),
    "encrypted_password": (str, NULL),
    "password_will_be_deleted_at": (str, NULL),
    "runtime_config": (dict, NULL),
    "terminated_at": (str, NULL),
    "generation": (int,),
}
# What a copy of an earlier placement must not report.
_FENCED_FIELDS = frozenset({"state", "host_node_id", "terminated_at"})


def get_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """The instance document the agent loads at the start of every job."""
    return instance_document(session, instance_id)


_INSTANCES = Instance.__table__
# The instance row a report changes, locked: concurrent reports apply one after the other.
_LOCK_INSTANCE = Query(select(
    _INSTANCES.c.id, _INSTANCES.c.state, _INSTANCES.c.host_node_id,
    _INSTANCES.c.placement_generation, _INSTANCES.c.status,
    _INSTANCES.c.encrypted_password, _INSTANCES.c.password_will_be_deleted_at,
    cast(_INSTANCES.c.runtime_config, Text)).where(_INSTANCES.c.uuid == bindparam("raw"))
    .with_for_update())


def update_instance(session: Session, instance_id: str, data: dict[str, Any]) -> None:
    """Apply an agent's report; state changes go through the instance state machine.

    Only the instance row is read (locked) and written, and only when a value changes;
    ``terminated`` finalizes, which reads the instance's volumes and vifs too; ``stopped``
    (the confirmation of ``api.stop_instance``) gives back the IP leases of its vifs."""
    check_fields("instance", data, UPDATABLE_INSTANCE_FIELDS, Instance)
    raw = ids.raw_part(instance_id, Instance.prefix)
    [rows] = fetch(session, (_LOCK_INSTANCE, {"raw": raw}))
    if not rows:
        raise Instance.not_found(f"unknown id '{instance_id}'")
    pk, state, host_node_id, generation, *current = rows[0]
    _check_generation(instance_id, generation, data)
    if data.get("state") == "terminated":
        teardown.finalize_instance(
            session, load_instance(session, instance_id),
            parse_time(data.get("terminated_at"), "terminated_at"))
        return
    if "terminated_at" in data:
        raise InvalidArgument("terminated_at is only accepted with state 'terminated'")
    if state == "terminated":
        return  # a late report about an instance already gone changes nothing
    values: dict[str, Any] = {}
    if "state" in data and check_transition("instance", INSTANCE_TRANSITIONS, state,
                                            data["state"], terminal="terminated"):
        values["state"] = data["state"]
    if "status" in data and data["status"] not in INSTANCE_STATUSES:
        raise InvalidArgument(f"unknown instance status: {data['status']!r}")
    if "host_node_id" in data:
        host = data["host_node_id"]
        host_id = None if host is None else HostNode.by_cuuid(session, host).id
        if host_id != host_node_id:
            # Stopped (NULL) or moved: the instance's capacity claim follows it.
            capacity.move_host(session, session.get(Instance, pk), host_id)
            values["host_node_id"] = host_id
    if values.get("state") == "stopped":
        # The agent confirms the stop: only now may its addresses go to other instances.
        teardown.release_addresses(session, pk)
    if "password_will_be_deleted_at" in data:
        data = {**data, "password_will_be_deleted_at": parse_time(
            data["password_will_be_deleted_at"], "password_will_be_deleted_at")}
    for key, stored in zip(_PLAIN_FIELDS, current, strict=True):
        if key in data and _stored_form(key, data[key]) != _READ[key](stored):
            values[key] = data[key]
    if values:  # as the ORM did, an unchanged row is not written (updated_at stays)
        session.execute(_update_of(frozenset(values)),
                        {"pk": pk, **{f"new_{key}": value for key, value in values.items()}})
        loaded = session.identity_map.get(session.identity_key(Instance, pk))
        if loaded is not None:  # an object of this row in the session reads it again
            session.expire(loaded, [*values, "updated_at"])


def _check_generation(instance_id: str, current: int, data: dict[str, Any]) -> None:
    """Refuse a report of an earlier placement (or one that cannot say which it is of)."""
    given = data.get("generation")
    if given is not None and given != current:
        raise StalePlacement(
            f"{instance_id} was placed again (generation {current}); this report is of "
            f"generation {given}: drop that copy")
    if given is None and current > 1 and _FENCED_FIELDS & data.keys():
        raise PlacementGenerationRequired(
            f"{instance_id} was placed {current} times: a report of its state or host must "
            f"carry its generation ({current}, the instance document's placement_generation)")


_UPDATES: dict[frozenset[str], Update] = {}


def _update_of(keys: frozenset[str]) -> Update:
    """UPDATE of those columns of one instance row (``pk``), built once per set of columns."""
    stmt = _UPDATES.get(keys)
    if stmt is None:
        stmt = _UPDATES[keys] = (update(_INSTANCES).where(_INSTANCES.c.id == bindparam("pk"))
                                 .values({key: bindparam(f"new_{key}") for key in sorted(keys)}))
    return stmt


# Fields written as given, in the order of _LOCK_INSTANCE's last columns, and how the stored
# value is read back to compare with the report's.
_PLAIN_FIELDS = ("status", "encrypted_password", "password_will_be_deleted_at",
                 "runtime_config")
_READ: dict[str, Any] = {"status": lambda v: v, "encrypted_password": lambda v: v,
                         "password_will_be_deleted_at": iso_time,
                         "runtime_config": lambda v: None if v is None else json.loads(v)}


def _stored_form(key: str, value: Any) -> Any:
    return to_iso(value) if key == "password_will_be_deleted_at" else value


def finalize_instance(session: Session, instance_id: str,
                      terminated_at: str | None = None) -> None:
    """Delete the instance's volumes (jobs sent after commit) and destroy it; idempotent."""
    when = parse_time(terminated_at, "terminated_at")
    teardown.finalize_instance(
        session, load_instance(session, instance_id, for_update=True), when)

