"""A claim on PostgreSQL reads the hosts in its ranking's order through an index (migration
0018) and stops at the first that fits: its cost does not grow with the fleet. The plan is
read from PostgreSQL itself (EXPLAIN of the statement ``claim_best`` runs, with the
statistics of a fleet of 2,000 hosts), and the claim still takes the host with the most
free capacity, a host's own allocation ratio counted."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from collector.db import unit_of_work
from collector.scheduling import capacity
from collector.scheduling.placement import host_request
from collector.timeutil import utcnow
from workers.demo.world import placement

pytestmark = pytest.mark.integration

HOSTS = 2000
INDEX = {"memory": "ix_host_nodes_free_memory", "cpu": "ix_host_nodes_free_cpu"}


@pytest.fixture()
def fleet(race_db):
    with unit_of_work(race_db) as session:
        world = placement.build(session, [placement.HostSize(16, 65536, 1024 * 1024)] * HOSTS,
                                cidr="10.70.0.0/16")
        waiting = world.awaiting_placement(session, 1)
    with unit_of_work(race_db) as session:
        session.connection().exec_driver_sql("ANALYZE")
    return race_db, world, waiting[0]


@pytest.mark.parametrize("order", ["memory", "cpu"])
def test_the_claim_reads_the_hosts_in_order_through_its_index(fleet, order):
    url, _world, instance_id = fleet
    stmt = capacity._claim_best_statement(order, 1000, 1000)
    with unit_of_work(url) as session:
        inst = session.execute(text("SELECT i.id, m.arch FROM instances i JOIN images m ON "
                                    "m.id = i.image_id")).one()
        values = {"claim_cpu": 1, "claim_memory": 2048, "claim_disk": 1 << 30,
                  "claim_hypervisor": "kvm", "claim_arch": inst.arch,
                  "claim_instance_id": inst.id, "claim_now": utcnow()}
        compiled = stmt.compile(dialect=session.bind.dialect)
        cursor = session.connection().connection.driver_connection.cursor()
        cursor.execute("EXPLAIN " + str(compiled), {**compiled.params, **values})
        plan = "\n".join(row[0] for row in cursor.fetchall())
        session.rollback()
    assert f"Index Scan using {INDEX[order]} on host_nodes" in plan, plan
    assert "Sort" not in plan, plan  # no host is ranked: the index is the ranking


def test_the_claim_takes_the_host_with_the_most_free_memory(fleet):
    url, world, instance_id = fleet
    with unit_of_work(url) as session:
        hosts = sorted(world.hosts, key=lambda h: h.id)
        roomy, ratioed = hosts[7], hosts[1500]
        session.execute(text("UPDATE host_nodes SET used_memory_size = 1024"))
        session.execute(text("UPDATE host_nodes SET used_memory_size = 0 WHERE id = :id"),
                        {"id": roomy.id})
        # Its own ratio (1.5) gives it the most free memory of all (97,280 MB against the
        # roomy host's 65,536): the index holds each host's own ratio, the default only for
        # hosts without one.
        session.execute(text("UPDATE host_nodes SET ram_allocation_ratio_milli = 1500, "
                             "used_memory_size = 1024 WHERE id = :id"), {"id": ratioed.id})
    with unit_of_work(url) as session:
        from collector.models import Instance

        inst = Instance.by_cuuid(session, instance_id)
        claimed = capacity.claim_best(session, host_request(inst, 0), inst, "memory")
        assert claimed is not None and claimed.id == ratioed.id
