"""Placement groups under contention on PostgreSQL: 4 OS processes (each its own engine)
place the members of one group at once, one placement per transaction or in batches.

- anti-affinity: 200 members, 60 hosts each with room for 8: at most ``max_per_host``
  members per host, the rest refused with the explanation;
- affinity: 100 members, 10 hosts each with room for 20: all on one host until it is full,
  the rest refused with the explanation.

Counted from the rows: instances alive on each host, allocations, refusals.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.models import HostAllocation, Instance, PlacementGroup
from collector.scheduling import capacity
from tests.integration.placement.test_placement_race import _place_all
from tests.support.placement_cluster import run_at_once
from workers.demo.world import placement

pytestmark = pytest.mark.integration

PROCESSES = 4


def _seed(url: str, hosts: int, slots: int, members: int, policy: str,
          max_per_host: int = 1) -> list[str]:
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize.slots(slots)] * hosts,
                                cidr="10.62.0.0/22", mac_range_end=0xFFFF)
        group = PlacementGroup(name="race", policy=policy, max_per_host=max_per_host)
        session.add(group)
        session.flush()
        return world.awaiting_placement(session, members, placement_group_id=group.id)


def _race(url: str, ids: list[str], batch_size: int) -> dict[tuple[str, str | None], int]:
    collected = run_at_once([(_place_all, url, batch_size, ids[n::PROCESSES])
                             for n in range(PROCESSES)])
    counts: dict[tuple[str, str | None], int] = {}
    for chunk, _ in collected:
        for _, outcome, error_type in chunk:
            counts[(outcome, error_type)] = counts.get((outcome, error_type), 0) + 1
    return counts


def _rows(url: str) -> tuple[list[int], list[int], list[str]]:
    """(alive members per host, allocations per host, refusals) from the rows."""
    with unit_of_work(url) as session:
        alive = session.scalars(select(func.count()).select_from(Instance)
                                .where(Instance.host_node_id.is_not(None),
                                       Instance.terminated_at.is_(None))
                                .group_by(Instance.host_node_id)).all()
        held = session.scalars(select(func.count()).select_from(HostAllocation)
                               .group_by(HostAllocation.host_node_id)).all()
        refused = session.scalars(select(Instance.placement_error)
                                  .where(Instance.state == "terminated")).all()
        assert capacity.reconcile(session) == []
    return sorted(alive, reverse=True), sorted(held, reverse=True), refused


@pytest.mark.parametrize("max_per_host", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 16], ids=["one_per_transaction", "batches"])
def test_anti_affinity_holds_under_concurrent_creates(race_db, batch_size, max_per_host):
    ids = _seed(race_db, hosts=60, slots=8, members=200, policy="anti-affinity",
                max_per_host=max_per_host)
    placed = 60 * max_per_host
    assert _race(race_db, ids, batch_size) == {
        ("placed", None): placed, ("failed", "InsufficientCapacity"): 200 - placed}
    alive, held, refused = _rows(race_db)
    assert alive == held == [max_per_host] * 60  # 0 violations
    assert len(refused) == 200 - placed
    assert all(e.startswith("InsufficientCapacity: 0/60 hosts available for i-")
               and e.endswith(": 60 excluded by anti-affinity of group race")
               for e in refused), refused[:3]


@pytest.mark.parametrize("batch_size", [1, 16], ids=["one_per_transaction", "batches"])
def test_affinity_holds_under_concurrent_creates(race_db, batch_size):
    ids = _seed(race_db, hosts=10, slots=20, members=100, policy="affinity")
    assert _race(race_db, ids, batch_size) == {
        ("placed", None): 20, ("failed", "InsufficientCapacity"): 80}
    alive, held, refused = _rows(race_db)
    assert alive == held == [20]  # one host, full; 0 members elsewhere
    assert len(refused) == 80
    assert all(e.endswith(": 9 not the host of affinity group race, 1 short of cpu")
               for e in refused), refused[:3]
