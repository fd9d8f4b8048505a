"""Bulk launches under contention on PostgreSQL: 4 OS processes (each its own engine) each
run one ``schedule_launch`` of 50 instances with ``min_count`` 50, at once, on hosts with
room for 150. Whatever the interleaving, each launch is all or none: its 50 placed, or its
50 terminated with ``InsufficientCapacity: only N of min_count 50 ...`` holding nothing;
no host over its offering, no address given twice, counters equal to allocations.
Launches may deadlock on each other's hosts (PostgreSQL aborts one; it is retried whole,
as the task layer retries in place)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.models import HostNode, Instance, NetworkVif, NetworkVifIpLease
from collector.scheduling import capacity
from tests.integration.placement.test_placement_race import retried
from tests.support.placement_cluster import run_at_once
from workers.demo.world import placement

pytestmark = pytest.mark.integration

HOSTS, SLOTS_PER_HOST, LAUNCHES, SIZE = 10, 15, 4, 50


def _launch(url: str, instance_ids: list[str], start: object, results: object) -> None:
    """One scheduler process running one launch job, all or none."""
    from collector.scheduling import batch

    start.wait()
    answer, retries = retried(url, lambda session: batch.schedule_launch(
        session, instance_ids, len(instance_ids)))
    results.put((instance_ids[0], answer["outcome"], answer["placed"], retries))


def test_concurrent_launches_are_each_all_or_none(race_db):
    with unit_of_work(race_db) as session:
        world = placement.build(session, [placement.HostSize.slots(SLOTS_PER_HOST)] * HOSTS,
                                cidr="10.63.0.0/22", mac_range_end=0xFFFF)
        ids = world.awaiting_placement(session, LAUNCHES * SIZE)
    launches = [ids[n * SIZE:(n + 1) * SIZE] for n in range(LAUNCHES)]
    results = run_at_once([(_launch, race_db, launch) for launch in launches])
    print(f"transient database errors retried: {sum(r[3] for r in results)}")
    outcomes = sorted((outcome, placed) for _, outcome, placed, _ in results)
    # Room for three: the fourth finds the hosts full (or held by a launch that wins).
    assert outcomes == [("failed", 0)] + [("placed", SIZE)] * 3, outcomes
    with unit_of_work(race_db) as session:
        for launch in launches:
            found = session.execute(select(Instance.state, Instance.placement_error).where(
                Instance.uuid.in_([i.split("-", 1)[1] for i in launch]))).all()
            states = {state for state, _ in found}
            assert states in ({"pending"}, {"terminated"}), states
            if states == {"terminated"}:
                assert all(e.startswith("InsufficientCapacity: only ")
                           and "of min_count 50 could be placed" in e for _, e in found)
        for host in session.scalars(select(HostNode)):
            alive = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.host_node_id == host.id, Instance.terminated_at.is_(None)))
            assert alive <= SLOTS_PER_HOST and host.used_cpu_cores <= host.offering_cpu_cores
        assert capacity.reconcile(session) == []
        macs = session.scalars(select(NetworkVif.mac_addr).where(
            NetworkVif.deleted_at.is_(None))).all()
        addresses = session.scalars(select(NetworkVifIpLease.ipv4).where(
            NetworkVifIpLease.deleted_at.is_(None))).all()
        assert len(macs) == len(set(macs)) == len(addresses) == len(set(addresses)) == 150
