"""Evacuation end to end on PostgreSQL: a real worker (role all: api, scheduler, events,
maintenance), reference agents for three hosts and a storage node, and the scheduler
configuration ``evacuate_on_node_offline = true``.

A host's agent is killed; the liveness sweep (the beat task, called directly) finds its
node offline and publishes ``node_collector/offline``; the scheduler role evacuates the
host: its HA instances (local and SAN boot) run on the other hosts, each booted exactly
once; its non-HA running instance is ``halted``; the host stays out of placement.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import HostNode, Instance, NodeState, OutboxMessage, QueuedJob
from collector.scheduling import capacity
from tests.support.checks import wait_for
from tests.support.placement_cluster import (
    cli,
    evacuating_env,
    instance_states,
    placement_cluster,
)
from tests.support.rpc import rpc_error, signed_celery

pytestmark = pytest.mark.integration

REDIS_DB = 13
FENCE_SEC = 2  # a SAN boot waits this long for the silent source's cleanup
BOOTS = ("run_local_store", "run_vol_store", "wait_volumes_available")


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server, tmp_path_factory):
    env = evacuating_env(tmp_path_factory.mktemp("evac"),
                         COLLECTOR_FENCE_TIMEOUT_SEC=str(FENCE_SEC))
    with placement_cluster(postgres_server.create_database(f"evac_{new_uuid()}"),
                           f"{redis_server.url}/{REDIS_DB}", 3, node_prefix="v",
                           cidr="10.70.0.0/24", env=env) as c:
        yield c


states = instance_states


def boot_jobs(c: dict, instance_id: str) -> list[tuple[str, str, str | None]]:
    with unit_of_work(c["db_url"], readonly=True) as session:
        return [(j.queue_name, j.job_name, j.finish_status) for j in session.scalars(
            select(QueuedJob).where(QueuedJob.resource_id == instance_id,
                                    QueuedJob.job_name.in_(BOOTS)).order_by(QueuedJob.id))]


def booted_by(c: dict, node_id: str, instance_id: str) -> int:
    return sum(1 for raw in c["redis"].lrange(f"agent-log:{node_id}", 0, -1)
               if (e := json.loads(raw))["phase"] == "finished" and e["args"][:1] == [instance_id]
               and e["name"] in BOOTS and (e.get("result") or {}).get("booted") == instance_id)


def node_state(c: dict, node_id: str) -> str | None:
    with unit_of_work(c["db_url"], readonly=True) as session:
        return session.scalar(select(NodeState.state).where(NodeState.node_id == node_id))


BAD_CALLS = [
    ("scheduler", "evacuate_from", [], "InvalidArgument"),
    ("scheduler", "evacuate_from", [42], "InvalidArgument"),
    ("scheduler", "evacuate_from", ["i-abcdefgh"], "InvalidArgument"),
    ("scheduler", "evacuate_from", ["hn-nothere0"], "UnknownHostNodeID"),
    ("scheduler", "evacuate_from", ["hn-nothere0", "yes"], "InvalidArgument"),
    ("scheduler", "evacuate_from", ["hn-nothere0", False, 1], "InvalidArgument"),
    ("api", "evacuate_host", [None], "InvalidArgument"),
    ("api", "evacuate_host", ["sn-abcdefgh"], "InvalidArgument"),
    ("api", "evacuate_host", ["hn-nothere0"], "UnknownHostNodeID"),
    ("api", "set_host_scheduling", ["hn-nothere0", True], "UnknownHostNodeID"),
    ("api", "set_host_scheduling", ["i-abcdefgh", True], "InvalidArgument"),
    ("api", "set_host_scheduling", ["hn-nothere0"], "InvalidArgument"),
    ("api", "set_host_scheduling", ["hn-nothere0", "yes"], "InvalidArgument"),
    ("api", "set_host_scheduling", ["hn-nothere0", 1], "InvalidArgument"),
]


def counts(c: dict) -> dict[str, int]:
    with unit_of_work(c["db_url"], readonly=True) as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m))
                for m in (QueuedJob, OutboxMessage, Instance)}


def test_bad_input_to_the_evacuation_tasks_is_typed_and_writes_nothing(cluster):
    c = cluster
    for endpoint, method, args, error_type in BAD_CALLS:
        before = counts(c)
        error = rpc_error(c["client"], endpoint, method, *args)
        assert (method, args, error.error_type) == (method, args, error_type)
        assert counts(c) == before
    events = signed_celery(c["broker"], c["broker"])
    for args in (["node_collector/offline", "hva.x", "collector.master"],
                 ["node_collector/offline", [42], "collector.master"]):
        result = events.send_task("events.scheduler.on_node_offline", args=args,
                                  queue="events.scheduler")
        with pytest.raises(Exception, match="InvalidArgument|node_id|args must be|valid list"):
            result.get(timeout=30)
    events.close()


def test_a_dead_host_agent_gets_its_ha_instances_running_elsewhere_once(cluster):
    c = cluster
    (source, source_node), *_ = c["hosts"].items()
    api = c["api"]

    def run(image: str, ha: bool) -> str:
        return api.create_instance({"image_id": image, "hypervisor": "kvm", "cpu_cores": 1,
                                    "memory_size": 512, "host_node_id": source,
                                    "ha_enabled": ha,
                                    "vifs": {"eth0": {"network": c["network"]}}})["id"]

    ha_local = [run(c["image"], True) for _ in range(2)]
    ha_san = run(c["san_image"], True)
    plain = run(c["image"], False)
    everyone = [*ha_local, ha_san, plain]
    wait_for(lambda: all(s == ("running", source) for s in states(c, everyone).values()),
             "every instance running on the source")

    c["agents"][source_node].kill()  # SIGKILL: no goodbye, heartbeats stop
    sweeper = signed_celery(c["broker"])

    def swept_offline() -> bool:
        sweeper.send_task("maintenance.sweep_node_states", queue="maintenance")
        return node_state(c, source_node) == "offline"

    wait_for(swept_offline, f"{source_node} offline", timeout=40)

    ha = [*ha_local, ha_san]

    def moved_and_running() -> dict | None:
        # The SAN boot is held for the source's cleanup: beat's release pass, called
        # directly, sends it once the fence timeout has passed.
        sweeper.send_task("maintenance.release_held_jobs", queue="maintenance")
        s = states(c, everyone)
        return s if all(s[i][0] == "running" and s[i][1] not in (None, source) for i in ha) \
            and s[plain][0] == "halted" else None

    moved = wait_for(moved_and_running, "HA instances running elsewhere, plain halted")
    sweeper.close()
    assert moved[plain] == ("halted", source)
    for instance_id in ha:
        new_node = c["hosts"][moved[instance_id][1]]
        expected = "run_vol_store" if instance_id == ha_san else "run_local_store"
        queue = "hva-handle" if instance_id == ha_san else "local-store-handle"

        def finished_elsewhere(i: str = instance_id) -> list | None:
            after = [j for j in boot_jobs(c, i) if not j[0].endswith(source_node)]
            return after if after and all(j[2] for j in after) else None

        after = wait_for(finished_elsewhere, f"the boot job of {instance_id} finished")
        assert after == [(f"{queue}.{new_node}", expected, "success")], boot_jobs(c, instance_id)
        assert booted_by(c, new_node, instance_id) == 1
        assert all(booted_by(c, n, instance_id) == 0 for n in c["hosts"].values()
                   if n not in (new_node, source_node))

    with unit_of_work(c["db_url"]) as session:
        host = HostNode.by_cuuid(session, source)
        assert host.scheduling_enabled is False and host.evacuated_at is not None
        assert capacity.reconcile(session) == []
        # The source was offline: each moved instance's cleanup waits for it to come back.
        cleanups = session.execute(select(QueuedJob.resource_id, QueuedJob.state).where(
            QueuedJob.job_name == "cleanup")).all()
        assert sorted(cleanups) == sorted((i, "held") for i in ha)

    # The same outage again (a repeated event, two scheduler workers at once): skipped.
    jobs_before = {i: boot_jobs(c, i) for i in ha}
    events = signed_celery(c["broker"], c["broker"])
    results = [events.send_task("events.scheduler.on_node_offline",
                                args=["node_collector/offline", [source_node],
                                      "collector.master"], queue="events.scheduler")
               for _ in range(2)]
    assert [r.get(timeout=30)["skipped"] for r in results] == \
        ["this outage was already evacuated"] * 2
    events.close()
    assert {i: boot_jobs(c, i) for i in ha} == jobs_before
    assert states(c, everyone) == moved

    # An operator's evacuation of the same host (the CLI, api.evacuate_host) finds nothing
    # left to move and leaves the host as it was: out of placement.
    ran = cli(c, "host", "evacuate", source)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith(f"{source}: 0 re-placed, 0 failed, 0 halted")
    with unit_of_work(c["db_url"], readonly=True) as session:
        assert HostNode.by_cuuid(session, source).scheduling_enabled is False

    # The operator takes the host back once it is mended (and can drain it again).
    for command, flag in (("enable", True), ("disable", False), ("enable", True)):
        ran = cli(c, "host", command, source)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == (f"{source} ({source_node}): placements "
                                      f"{'enabled' if flag else 'disabled'}")
        with unit_of_work(c["db_url"], readonly=True) as session:
            assert HostNode.by_cuuid(session, source).scheduling_enabled is flag
