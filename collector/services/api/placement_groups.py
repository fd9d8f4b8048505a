"""``api``: placement groups (instances placed together or apart).

create_placement_group(params) -> group document; params ``name``, ``policy`` (affinity,
    anti-affinity, soft-affinity, soft-anti-affinity), ``max_per_host`` (anti-affinity
    policies only, default 1), ``account_id`` (``requests.PlacementGroupRequest``)
list_placement_groups(account_id=None) / show_placement_group(placement_group_id)
    -> documents: id, name, policy, max_per_host, account_id, members (alive instances,
    i-..., with the host each holds or None), created_at
delete_placement_group(placement_group_id) -> the document, deleted; DestroyRefused while
    an alive (not terminated) instance is a member

``api.create_instance`` takes ``placement_group``: the member's placement then obeys the
group (``collector.scheduling.groups``). A create and a delete of the same group are
ordered by the group row's lock: the create holds it FOR SHARE, the delete FOR UPDATE, so a
delete never misses a member created concurrently.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.errors import DestroyRefused, InvalidParameter, UnknownPlacementGroupID
from collector.ids import raw_part
from collector.models import HostNode, Instance, PlacementGroup
from collector.services.api.requests import PlacementGroupRequest

LIST_LIMIT = 1000


def create_placement_group(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A new placement group; the request checked whole first (nothing written on a
    refusal: InvalidParameter naming the field)."""
    request = PlacementGroupRequest.from_params(params)
    group = PlacementGroup(name=request.name, policy=request.policy,
                           max_per_host=request.max_per_host or 1,
                           account_id=request.account_id)
    session.add(group)
    session.flush()
    return _document(session, group)


def show_placement_group(session: Session, placement_group_id: str) -> dict[str, Any]:
    """The group's document (deleted ones too, with ``deleted_at``)."""
    return _document(session, PlacementGroup.by_cuuid(session, placement_group_id))


def list_placement_groups(session: Session, account_id: str | None = None
                          ) -> list[dict[str, Any]]:
    """The groups not deleted, oldest first (of one account when given)."""
    stmt = select(PlacementGroup).where(PlacementGroup.alive()).order_by(PlacementGroup.id)
    if account_id is not None:
        raw_part(account_id, "a")  # a malformed account id is refused, not an empty list
        stmt = stmt.where(PlacementGroup.account_id == account_id)
    return [_document(session, g) for g in session.scalars(stmt.limit(LIST_LIMIT))]


def delete_placement_group(session: Session, placement_group_id: str) -> dict[str, Any]:
    """Delete the group; refused (DestroyRefused) while an alive instance is a member.
    Deleting a deleted group changes nothing."""
    group = PlacementGroup.by_cuuid(session, placement_group_id, for_update=True)
    members = _members(session, group)
    if members and group.deleted_at is None:
        raise DestroyRefused(f"placement group {group.canonical_uuid} still has "
                             f"{len(members)} alive members: "
                             + ", ".join(m["id"] for m in members[:10]))
    group.soft_delete()
    session.flush()
    return _document(session, group)


def live_group(session: Session, placement_group_id: str, account_id: str) -> PlacementGroup:
    """The group a new instance joins, locked FOR SHARE against a concurrent delete: it
    exists, is not deleted and is of the instance's account."""
    raw = raw_part(placement_group_id, PlacementGroup.prefix)
    group = session.scalars(select(PlacementGroup).where(PlacementGroup.uuid == raw)
                            .with_for_update(read=True)).first()
    if group is None or group.deleted_at is not None:
        raise UnknownPlacementGroupID(f"unknown placement group '{placement_group_id}'")
    if group.account_id != account_id:
        raise InvalidParameter(f"placement group {placement_group_id} is of account "
                               f"{group.account_id}, not {account_id}")
    return group


def _members(session: Session, group: PlacementGroup) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Instance.uuid, HostNode.uuid.label("host"))
        .outerjoin(HostNode, HostNode.id == Instance.host_node_id)
        .where(Instance.placement_group_id == group.id, Instance.terminated_at.is_(None))
        .order_by(Instance.id))
    return [{"id": f"{Instance.prefix}-{r.uuid}",
             "host_node_id": f"{HostNode.prefix}-{r.host}" if r.host else None} for r in rows]


def _document(session: Session, group: PlacementGroup) -> dict[str, Any]:
    return {"id": group.canonical_uuid, "name": group.name, "policy": group.policy,
            "max_per_host": group.max_per_host, "account_id": group.account_id,
            "members": _members(session, group),
            "created_at": group.created_at.isoformat() if group.created_at else None,
            "deleted_at": group.deleted_at.isoformat() if group.deleted_at else None}
