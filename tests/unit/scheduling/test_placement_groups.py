"""Placement groups on a real database (SQLite, and PostgreSQL through the ``session``
fixture): the hard policies refuse a host in the claim itself and say so in the refusal,
the soft ones only rank; a stopped member started again obeys its group; unrelated
placements never wait for a group's lock (PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import dialect_name
from collector.models import HostAllocation, Instance, PlacementGroup
from collector.scheduling import capacity, handlers
from tests.support.scheduling import scheduling_instance


def _group(session, policy: str, max_per_host: int = 1, name: str = "web") -> PlacementGroup:
    group = PlacementGroup(name=name, policy=policy, max_per_host=max_per_host)
    session.add(group)
    session.flush()
    return group


def _members(session, world, group: PlacementGroup, n: int) -> list[dict]:
    """``n`` members placed one after the other: each one's placement answer."""
    answers = []
    for _ in range(n):
        inst = scheduling_instance(session, world)
        inst.placement_group_id = group.id
        session.flush()
        answers.append(handlers.schedule_instance(session, inst.canonical_uuid))
    return answers


def _per_host(session, group: PlacementGroup) -> list[int]:
    """Members holding each host (allocation rows), most first."""
    return sorted(session.scalars(
        select(func.count()).select_from(HostAllocation)
        .join(Instance, Instance.id == HostAllocation.instance_id)
        .where(Instance.placement_group_id == group.id)
        .group_by(HostAllocation.host_node_id)).all(), reverse=True)


def test_anti_affinity_places_one_member_per_host_and_explains_the_rest(session, world):
    group = _group(session, "anti-affinity")
    answers = _members(session, world, group, 3)
    assert [a["outcome"] for a in answers] == ["placed", "placed", "failed"]
    assert answers[2]["error_type"] == "InsufficientCapacity"
    assert "2 excluded by anti-affinity of group web" in answers[2]["message"]
    assert _per_host(session, group) == [1, 1]
    assert capacity.reconcile(session) == []


def test_anti_affinity_max_per_host(session, world):
    group = _group(session, "anti-affinity", max_per_host=2)
    answers = _members(session, world, group, 5)
    assert [a["outcome"] for a in answers].count("placed") == 4
    assert _per_host(session, group) == [2, 2]


def test_affinity_keeps_every_member_on_the_first_host_until_it_is_full(session, world):
    group = _group(session, "affinity", name="db")
    answers = _members(session, world, group, 5)  # a host takes 4 of 1 core, 1024 MB
    assert [a["outcome"] for a in answers] == ["placed"] * 4 + ["failed"]
    assert len({a["host_node_id"] for a in answers[:4]}) == 1
    assert "1 not the host of affinity group db" in answers[4]["message"]
    assert _per_host(session, group) == [4]


def test_soft_anti_affinity_spreads_but_never_refuses(session, world):
    group = _group(session, "soft-anti-affinity")
    answers = _members(session, world, group, 4)
    assert [a["outcome"] for a in answers] == ["placed"] * 4
    assert len({a["host_node_id"] for a in answers[:2]}) == 2
    assert _per_host(session, group) == [2, 2]


def test_soft_affinity_gathers_but_never_refuses(session, world):
    group = _group(session, "soft-affinity")
    answers = _members(session, world, group, 5)
    assert [a["outcome"] for a in answers] == ["placed"] * 5
    assert _per_host(session, group) == [4, 1]


def test_a_started_member_obeys_its_anti_affinity_group(session, world):
    group = _group(session, "anti-affinity")
    first, second = _members(session, world, group, 2)
    stopped = Instance.by_cuuid(session, second["instance_id"])
    capacity.move_host(session, stopped, None)  # as the agent's ``stopped`` report does
    stopped.state, stopped.host_node_id = "stopped", None
    third = _members(session, world, group, 1)[0]  # takes the host the stopped one left
    assert third["outcome"] == "placed"
    stopped.state = "scheduling"
    session.flush()
    started = handlers.schedule_start_instance(session, stopped.canonical_uuid)
    assert started["outcome"] == "failed"
    assert "excluded by anti-affinity of group web" in started["message"]
    assert _per_host(session, group) == [1, 1]


def test_a_hard_group_lock_does_not_hold_up_other_placements(db_url, session):
    """PostgreSQL: while one transaction holds group a (mid-placement), another one takes
    group b's lock and places an instance of no group at once; only a's waits."""
    if dialect_name(session) != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from collector.db import session_factory
    from collector.scheduling import groups

    factory = session_factory(db_url)
    with factory() as setup, setup.begin():
        a, b = PlacementGroup(name="a", policy="affinity"), \
            PlacementGroup(name="b", policy="anti-affinity")
        setup.add_all([a, b])
    first, other = factory(), factory()
    try:
        first.begin()
        with first.no_autoflush:  # members never written: only the locks matter here
            member = Instance(placement_group_id=a.id)
            first.add(member)
            assert groups.hold(first, member).policy == "affinity"
        other.begin()
        other.execute(text("SET LOCAL lock_timeout = '1s'"))
        with other.no_autoflush:
            for group_id in (b.id, None):
                unrelated = Instance(placement_group_id=group_id)
                other.add(unrelated)
                groups.hold(other, unrelated)  # at once (else the lock timeout raises)
            blocked = Instance(placement_group_id=a.id)
            other.add(blocked)
            with pytest.raises(OperationalError, match="lock timeout"):
                groups.hold(other, blocked)
    finally:
        for s in (first, other):
            s.rollback()
            s.close()
        with factory() as cleanup, cleanup.begin():
            cleanup.execute(PlacementGroup.__table__.delete().where(
                PlacementGroup.id.in_([a.id, b.id])))
