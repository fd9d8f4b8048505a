"""A host agent that was only frozen comes back after its HA instances were placed elsewhere,
on PostgreSQL with a real worker, reference agents and ``evacuate_on_node_offline = true``.

The agent of host A is stopped with SIGSTOP (not killed) while one HA instance runs on A and
a stop is queued for it, and while a start of another HA instance is queued on A. A's node
goes offline; the scheduler evacuates A: both instances run on B. Then SIGCONT: A's queued
stop and boot are cancelled in the ledger and never run, A's heartbeat brings it back and it
gets the cleanup of both instances, which it runs; no instance is ever reported running or
stopped by A after the re-placement, each runs on B only, and A stays out of placement.
"""

from __future__ import annotations

import json
import signal

import pytest
from sqlalchemy import select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import HostNode, Instance, NodeState, QueuedJob
from collector.scheduling import capacity
from tests.support.checks import wait_for
from tests.support.placement_cluster import evacuating_env, placement_cluster
from tests.support.rpc import rpc_error, signed_celery

pytestmark = pytest.mark.integration

REDIS_DB = 9


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server, tmp_path_factory):
    env = evacuating_env(tmp_path_factory.mktemp("fence"))
    with placement_cluster(postgres_server.create_database(f"fence_{new_uuid()}"),
                           f"{redis_server.url}/{REDIS_DB}", 2, node_prefix="f",
                           cidr="10.71.0.0/24", env=env) as c:
        yield c


def placed(c: dict, instance_id: str) -> tuple[str, str | None, int]:
    with unit_of_work(c["db_url"], readonly=True) as session:
        inst = Instance.by_cuuid(session, instance_id)
        return (inst.state, inst.host_node.canonical_uuid if inst.host_node else None,
                inst.placement_generation)


def ledger(c: dict, instance_id: str, node_id: str) -> list[tuple[str, str, str | None]]:
    with unit_of_work(c["db_url"], readonly=True) as session:
        return [(j.job_name, j.state, j.finish_status) for j in session.scalars(
            select(QueuedJob).where(QueuedJob.resource_id == instance_id,
                                    QueuedJob.queue_name.endswith(f".{node_id}"))
            .order_by(QueuedJob.id))]


def ran_on(c: dict, node_id: str) -> list[tuple[str, str, str]]:
    """(job name, instance, phase) of every job handler that ran on the node."""
    return [(e["name"], e["args"][0] if e["args"] else "", e["phase"])
            for e in map(json.loads, c["redis"].lrange(f"agent-log:{node_id}", 0, -1))]


def copies(c: dict, node_id: str) -> set[str]:
    return {m.decode() for m in c["redis"].smembers(f"agent-copies:{node_id}")}


def test_a_frozen_agent_back_after_its_instances_moved_runs_nothing_stale(cluster):
    c = cluster
    (host_a, node_a), (host_b, node_b) = c["hosts"].items()
    api = c["api"]

    def run(host: str) -> str:
        return api.create_instance({
            "image_id": c["image"], "hypervisor": "kvm", "cpu_cores": 1, "memory_size": 512,
            "host_node_id": host, "ha_enabled": True,
            "vifs": {"eth0": {"network": c["network"]}}})["id"]

    running, restarted = run(host_a), run(host_a)
    wait_for(lambda: placed(c, running)[:2] == placed(c, restarted)[:2] == ("running", host_a),
             "both instances running on A")
    api.stop_instance(restarted)
    wait_for(lambda: placed(c, restarted)[0] == "stopped", "the second instance stopped")
    assert copies(c, node_a) == {running}

    c["agents"][node_a].kill(signal.SIGSTOP)  # frozen: alive, silent
    try:
        api.stop_instance(running)  # queued behind the freeze
        api.set_host_scheduling(host_b, False)  # the start can only go to A
        api.start_instance(restarted)
        wait_for(lambda: placed(c, restarted)[:2] == ("pending", host_a),
                 "the start placed on A, its boot queued behind the freeze")
        api.set_host_scheduling(host_b, True)
        assert [j[:2] for j in ledger(c, running, node_a)][-1] == ("stop", "pending")

        sweeper = signed_celery(c["broker"])

        def swept_offline() -> bool:
            sweeper.send_task("maintenance.sweep_node_states", queue="maintenance")
            with unit_of_work(c["db_url"], readonly=True) as session:
                return session.scalar(select(NodeState.state).where(
                    NodeState.node_id == node_a)) == "offline"

        wait_for(swept_offline, f"{node_a} offline", timeout=40)
        sweeper.close()
        wait_for(lambda: placed(c, running)[:2] == placed(c, restarted)[:2]
                 == ("running", host_b), "both instances running on B", timeout=60)
        moved = {i: placed(c, i) for i in (running, restarted)}
        assert moved[running][2] == 2 and moved[restarted][2] == 3  # placed again each
        for instance_id in (running, restarted):
            stale = [j for j in ledger(c, instance_id, node_a) if j[0] != "cleanup"]
            assert stale and all(j[1:] in (("finished", "cancel"), ("finished", "success"))
                                 for j in stale), stale
            assert ("cleanup", "held", None) in ledger(c, instance_id, node_a)
        assert copies(c, node_b) == {running, restarted}
        before_resume = len(ran_on(c, node_a))
    finally:
        c["agents"][node_a].kill(signal.SIGCONT)

    # Back: A's heartbeat releases the cleanups, which it runs; nothing stale runs.
    def cleaned() -> bool:
        return all(("cleanup", "finished", "success") in ledger(c, i, node_a)
                   for i in (running, restarted))

    wait_for(cleaned, "A cleaned up both copies", timeout=60)
    assert copies(c, node_a) == set()
    after = ran_on(c, node_a)[before_resume:]
    assert {(name, phase) for name, _i, phase in after} == {("cleanup", "started"),
                                                            ("cleanup", "finished")}, after
    # Every message A held is consumed and acknowledged: it ran or skipped all of them.
    queues = [f"hva-handle.{node_a}", f"local-store-handle.{node_a}"]
    wait_for(lambda: sum(c["redis"].llen(q) for q in queues) == 0
             and c["redis"].hlen(f"unacked.{node_a}") == 0, "A's queues drained")
    assert {i: placed(c, i) for i in (running, restarted)} == moved
    assert copies(c, node_b) == {running, restarted}
    for instance_id in (running, restarted):
        assert all(j[1] == "finished" for j in ledger(c, instance_id, node_a))

    # A plain agent that ignores the generation cannot report a moved instance either.
    hva = "hva-collector"
    refused = rpc_error(c["client"], hva, "update_instance", running, {"state": "stopping"})
    assert refused.error_type == "PlacementGenerationRequired"
    stale = rpc_error(c["client"], hva, "update_instance", running,
                      {"state": "stopping", "generation": 1})
    assert stale.error_type == "StalePlacement"
    assert placed(c, running) == moved[running]

    with unit_of_work(c["db_url"]) as session:
        host = HostNode.by_cuuid(session, host_a)
        assert host.scheduling_enabled is False  # out of placement until an operator
        assert capacity.reconcile(session) == []
