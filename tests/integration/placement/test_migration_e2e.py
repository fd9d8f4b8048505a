"""Live migration and host drain end to end on PostgreSQL: a real worker (role all),
reference agents for three hosts and a storage node.

``api.migrate_instance`` to a named host: the destination's agent boots the copy
(``run_migration`` on ``migration-handle.<dest>``), reports the switch, the source's agent
drops its copy (``cleanup``); the instance ends ``running`` on the destination only, its
counters true. ``collector host drain`` empties a host of 10 instances: every one running
elsewhere, each copy on exactly one node, the host disabled.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import HostNode, MigrationAllocation
from collector.scheduling import capacity
from tests.support.checks import wait_for
from tests.support.placement_cluster import cli, instance_states, placement_cluster
from workers.demo.world import placement

pytestmark = pytest.mark.integration

REDIS_DB = 11


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server):
    with placement_cluster(postgres_server.create_database(f"migr_{new_uuid()}"),
                           f"{redis_server.url}/{REDIS_DB}", 3, node_prefix="m",
                           cidr="10.71.0.0/24",
                           host_size=placement.HostSize(16, 16384, 400 * 1024)) as c:
        yield c


states = instance_states


def launch(c: dict, host: str, count: int) -> list[str]:
    ids = [c["api"].create_instance({"image_id": c["image"], "hypervisor": "kvm",
                                     "cpu_cores": 1, "memory_size": 512, "host_node_id": host,
                                     "vifs": {"eth0": {"network": c["network"]}}})["id"]
           for _ in range(count)]
    wait_for(lambda: all(s == ("running", host) for s in states(c, ids).values()),
             f"{count} instances running on {host}")
    return ids


def copies(c: dict) -> dict[str, set[str]]:
    return {node: {m.decode() for m in c["redis"].smembers(f"agent-copies:{node}")}
            for node in c["hosts"].values()}


def check_world(c: dict) -> None:
    with unit_of_work(c["db_url"], readonly=True) as session:
        assert capacity.reconcile(session) == []
        assert session.scalars(select(MigrationAllocation)).all() == []


def test_a_named_migration_moves_the_instance_and_the_source_drops_its_copy(cluster):
    c = cluster
    (source, source_node), (dest, dest_node), _ = c["hosts"].items()
    [instance_id] = launch(c, source, 1)
    doc = c["api"].migrate_instance(instance_id, dest)
    assert doc["state"] == "migrating"

    def moved() -> bool:
        held = copies(c)
        return states(c, [instance_id])[instance_id] == ("running", dest) \
            and instance_id in held[dest_node] and instance_id not in held[source_node]

    wait_for(moved, f"{instance_id} running on {dest} only")
    doc = c["client"].rpc("hva-collector").get_instance(instance_id)
    assert doc["placement_generation"] == 2
    check_world(c)


def test_drain_empties_a_host_of_ten_instances(cluster):
    c = cluster
    _, _, (host, node) = c["hosts"].items()
    ids = launch(c, host, 10)
    done = cli(c, "host", "drain", host, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{host}: 10 migrated, 0 failed" in done.stdout
    after = states(c, ids)
    assert all(state == "running" and where not in (None, host)
               for state, where in after.values()), after
    held = copies(c)
    for instance_id in ids:
        assert [n for n, s in held.items() if instance_id in s] == \
            [c["hosts"][after[instance_id][1]]], instance_id
    assert not held[node] & set(ids)
    with unit_of_work(c["db_url"], readonly=True) as session:
        assert HostNode.by_cuuid(session, host).scheduling_enabled is False
    check_world(c)
