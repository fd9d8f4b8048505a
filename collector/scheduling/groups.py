"""Placement groups as placement applies them.

A member "holds" a host through its ``host_allocations`` row, or its
``migration_allocations`` row on a live migration's destination: stopped members hold none,
a member shutting down still does. The member being placed never counts itself (it was
released before, or it is migrating away).

Hard policies are conditions of the statement that claims the host (``allows``, appended
by ``capacity._claimable``):

- ``anti-affinity``: fewer than ``max_per_host`` members hold the host;
- ``affinity``: no member holds another host (the group's first host only, once it has one).

Those counts are sub-SELECTs, read with the claim statement's snapshot, which a concurrent
claim of the same group could not yet show. So every claim of a hard group first locks the
group's row FOR UPDATE (``hold``), held to the commit: the claims of one group are
serialized and each one's statement, begun after the previous one committed, sees its
member. Claims of other groups and of instances in none never wait for it.

Soft policies only rank (``prefer``): fewer members first (soft-anti-affinity) or more
(soft-affinity), the strategy's order breaking ties; they never refuse a host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, func, select, union_all
from sqlalchemy.orm import Session, object_session

from collector.models import (
    AFFINITY,
    ANTI_AFFINITY,
    SOFT_AFFINITY,
    HostAllocation,
    HostNode,
    Instance,
    MigrationAllocation,
    PlacementGroup,
)
from collector.scheduling.candidates import GroupRule, HostCandidate


def rule_of(instance: Instance) -> GroupRule | None:
    """The instance's placement group as a rule, or None (not in a group)."""
    if instance.placement_group_id is None:
        return None
    group = object_session(instance).get(PlacementGroup, instance.placement_group_id)
    return GroupRule(id=group.id, uuid=group.canonical_uuid, name=group.name,
                     policy=group.policy, max_per_host=group.max_per_host,
                     instance_id=instance.id)


def hold(session: Session, instance: Instance) -> GroupRule | None:
    """The instance's group, its row locked FOR UPDATE when its policy is hard (see the
    module docstring); call it before the claim statement, in the claim's transaction."""
    rule = rule_of(instance)
    if rule is not None and rule.hard:
        session.execute(select(PlacementGroup.id).where(PlacementGroup.id == rule.id)
                        .with_for_update())
    return rule


def _held() -> Any:
    """(instance_id, host_node_id) of every host claim: allocations and migrations'."""
    return union_all(select(HostAllocation.instance_id, HostAllocation.host_node_id),
                     select(MigrationAllocation.instance_id,
                            MigrationAllocation.host_node_id)).subquery()


def _members(rule: GroupRule) -> Any:
    members = select(Instance.id).where(Instance.placement_group_id == rule.id)
    if rule.instance_id is not None:
        members = members.where(Instance.id != rule.instance_id)
    return members


def members_on_host(rule: GroupRule) -> Any:
    """SQL, correlated to ``host_nodes``: the group's members holding that host."""
    held = _held()
    return (select(func.count()).select_from(held)
            .where(held.c.host_node_id == HostNode.id, held.c.instance_id.in_(_members(rule)))
            .scalar_subquery())


def allows(rule: GroupRule | None) -> Any | None:
    """SQL on a ``host_nodes`` row: the hard policy lets the member have that host (None:
    nothing to check, no group or a soft one)."""
    if rule is None or not rule.hard:
        return None
    if rule.policy == ANTI_AFFINITY:
        return members_on_host(rule) < rule.max_per_host
    held = _held()
    return ~exists(select(held.c.instance_id).where(held.c.host_node_id != HostNode.id,
                                                    held.c.instance_id.in_(_members(rule))))


def conditions(rule: GroupRule | None) -> list[Any]:
    """``allows`` as a list of WHERE conditions (empty when there is nothing to check)."""
    condition = allows(rule)
    return [] if condition is None else [condition]


def refusal_reason(rule: GroupRule) -> str:
    """How a refusal counts the hosts the hard policy excludes."""
    if rule.policy == AFFINITY:
        return f"not the host of affinity group {rule.name}"
    return f"excluded by anti-affinity of group {rule.name}"


def read_all(rule: GroupRule | None, limit: int | None) -> int | None:
    """The candidate limit of a placement: a soft group reads every host that fits, so the
    hosts it prefers are among them whatever their room."""
    return None if rule is not None and not rule.hard else limit


def prefer(session: Session, rule: GroupRule | None, ranked: Sequence[HostCandidate]
           ) -> list[HostCandidate]:
    """The strategy's ranking, reordered by a soft policy: fewer members first
    (soft-anti-affinity) or more (soft-affinity), ties in the strategy's order."""
    if rule is None or rule.hard or not ranked:
        return list(ranked)
    held = _held()
    counts = dict(session.execute(
        select(held.c.host_node_id, func.count()).where(
            held.c.host_node_id.in_([c.id for c in ranked]),
            held.c.instance_id.in_(_members(rule))).group_by(held.c.host_node_id)).all())
    sign = -1 if rule.policy == SOFT_AFFINITY else 1
    return sorted(ranked, key=lambda c: sign * counts.get(c.id, 0))
