"""Placement end to end: the api and scheduler tasks on a real worker (role all), reference
agents on real Redis, SQLite and PostgreSQL.

Each module run has its own database, worker and broker database: placement looks at every
host and storage node of a database, so hosts other tests leave behind must not be chosen,
and ours must not be chosen by theirs. The world: two hosts (8 cores, 16 GB, 200 GB of
local disk each) and one storage node, each served by a reference agent; a network; a MAC
range; a local-boot and a SAN-boot image.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from collector.db import outbox, unit_of_work
from collector.ids import new_uuid
from collector.models import (
    HostNode,
    Instance,
    IpLease,
    MacLease,
    NetworkVif,
    QueuedJob,
    StorageNode,
    Volume,
)
from collector.models.outbox import OutboxMessage
from tasks import relay
from tests.support.checks import wait_for
from tests.support.placement_cluster import cli, placement_cluster
from tests.support.rpc import rpc_error
from workers.demo.world import make

pytestmark = pytest.mark.integration

REDIS_DB = {"sqlite": 10, "postgresql": 11}
WAIT_SEC = 45  # for an instance's state, a job, a claim freed


@pytest.fixture(scope="module")
def cluster(request, db_url, redis_server, tmp_path_factory):
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'placement.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"e2e_{new_uuid()}")
    with placement_cluster(url, f"{redis_server.url}/{REDIS_DB[backend]}", 2, node_prefix="e",
                           cidr="10.20.0.0/24") as c:
        yield c


def request(c: dict, **params: Any) -> dict[str, Any]:
    return {"image_id": c["image"], "hypervisor": "kvm", "cpu_cores": 1, "memory_size": 512,
            "vifs": {"eth0": {"network": c["network"]}}, **params}


def show(c: dict, instance_id: str) -> dict[str, Any]:
    return c["api"].show_instance(instance_id)


def wait_state(c: dict, instance_id: str, state: str, timeout: float = WAIT_SEC) -> dict[str, Any]:
    seen: list[str] = []

    def reached() -> dict | None:
        doc = show(c, instance_id)
        if not seen or seen[-1] != doc["state"]:
            seen.append(doc["state"])
        return doc if doc["state"] == state else None

    try:
        return wait_for(reached, f"{instance_id} {state}", timeout)
    except AssertionError:
        raise AssertionError(f"{instance_id} never reached {state}; states seen: {seen}; "
                             f"last: {show(c, instance_id)}") from None


def jobs_of(c: dict, resource_id: str) -> list[QueuedJob]:
    with unit_of_work(c["db_url"]) as session:
        return list(session.scalars(select(QueuedJob).where(
            QueuedJob.resource_id == resource_id).order_by(QueuedJob.id)))


def agent_log(c: dict, node_id: str) -> list[dict]:
    return [json.loads(x) for x in c["redis"].lrange(f"agent-log:{node_id}", 0, -1)]


def host_used(c: dict) -> dict[str, tuple[int, int]]:
    with unit_of_work(c["db_url"]) as session:
        return {h.canonical_uuid: (h.used_cpu_cores, h.used_memory_size)
                for h in session.scalars(select(HostNode))}


def counts(c: dict) -> dict[str, int]:
    with unit_of_work(c["db_url"]) as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Instance, Volume, NetworkVif, MacLease, IpLease, QueuedJob,
                              OutboxMessage)}


def finished(c: dict, job_id: str) -> QueuedJob | None:
    with unit_of_work(c["db_url"]) as session:
        job = QueuedJob.by_cuuid(session, job_id)
    return job if job.state == "finished" else None


# --- bad input: first, while nothing else runs ---------------------------------------------

def _running_instance(c: dict, state: str = "running") -> str:
    with unit_of_work(c["db_url"]) as session:
        host = HostNode.by_cuuid(session, next(iter(c["hosts"])))
        return make.instance(session, host if state == "running" else None,
                                    state=state).canonical_uuid


BAD_CALLS = [
    ("api", "create_instance", lambda c: ["not a map"], "InvalidArgument"),
    ("api", "create_instance", lambda c: [request(c), "extra"], "InvalidArgument"),
    ("api", "create_instance", lambda c: [{}], "InvalidParameter"),
    ("api", "create_instance", lambda c: [request(c, image_id="wmi-nothere0")],
     "UnknownImageID"),
    ("api", "create_instance", lambda c: [request(c, hypervisor="xen-4.0")],
     "InvalidParameter"),
    ("api", "create_instance", lambda c: [request(c, cpu_cores=0)], "InvalidParameter"),
    ("api", "create_instance", lambda c: [request(c, cpu_cores=99)], "OutOfHostCapacity"),
    ("api", "create_instance", lambda c: [request(c, vifs=["eth0"])], "InvalidParameter"),
    ("api", "create_instance", lambda c: [request(c, vifs={"eth0": {"network": "nw-nothere0"}})],
     "UnknownNetworkID"),
    ("api", "create_instance", lambda c: [request(c, vifs={"eth0": {
        "network": c["network"], "ipv4_addr": "10.20.0.3"}})], "IpNotInDhcpRange"),
    ("api", "create_instance", lambda c: [request(c, vifs={"eth0": {
        "network": c["network"], "mac_addr": "xyz"}})], "InvalidMacAddress"),
    ("api", "create_instance", lambda c: [request(c, host_node_id="hn-nothere0")],
     "UnknownHostNodeID"),
    ("api", "create_instance", lambda c: [request(c, security_groups="sg-nothere0")],
     "UnknownSecurityGroupID"),
    ("api", "create_instance", lambda c: [request(c, volumes=[{"volume_type": "local"}])],
     "InvalidParameter"),
    ("api", "start_instance", lambda c: [42], "InvalidArgument"),
    ("api", "start_instance", lambda c: ["i-nothere0"], "UnknownInstanceID"),
    ("api", "start_instance", lambda c: [_running_instance(c)], "InvalidInstanceState"),
    ("api", "stop_instance", lambda c: [], "InvalidArgument"),
    ("api", "stop_instance", lambda c: ["vol-abcdefgh"], "InvalidArgument"),
    ("api", "stop_instance", lambda c: [_running_instance(c, "stopped")],
     "InvalidInstanceState"),
    ("api", "terminate_instance", lambda c: ["i-nothere0"], "UnknownInstanceID"),
    ("api", "terminate_instance", lambda c: [None], "InvalidArgument"),
    ("api", "create_volume", lambda c: [{}], "InvalidParameter"),
    ("api", "create_volume", lambda c: [{"volume_size": 1}], "InvalidParameter"),
    ("api", "create_volume", lambda c: [{"volume_size": 10, "storage_node_id": "sn-nothere0"}],
     "UnknownStorageNodeID"),
    ("api", "create_volume", lambda c: [[10]], "InvalidArgument"),
    ("api", "show_instance", lambda c: ["i-nothere0"], "UnknownInstanceID"),
    ("api", "list_instances", lambda c: [None, None, False, 0], "InvalidArgument"),
    ("api", "show_volume", lambda c: ["i-abcdefgh"], "InvalidArgument"),
    ("api", "list_volumes", lambda c: ["available", None, "yes"], "InvalidArgument"),
    ("scheduler", "schedule_instance", lambda c: [], "InvalidArgument"),
    ("scheduler", "schedule_instance", lambda c: [42], "InvalidArgument"),
    ("scheduler", "schedule_instance", lambda c: ["vol-abcdefgh"], "InvalidArgument"),
    ("scheduler", "schedule_instance", lambda c: ["i-nothere0"], "UnknownInstanceID"),
    ("scheduler", "schedule_start_instance", lambda c: [["i-abcdefgh"]], "InvalidArgument"),
    ("scheduler", "schedule_start_instance", lambda c: ["i-nothere0"], "UnknownInstanceID"),
    ("scheduler", "schedule_volume", lambda c: ["i-abcdefgh"], "InvalidArgument"),
    ("scheduler", "schedule_volume", lambda c: ["vol-nothere0"], "UnknownVolumeID"),
]


def test_bad_input_to_every_api_and_scheduler_task_is_typed_and_writes_nothing(cluster):
    c = cluster
    tasks = {(endpoint, method) for endpoint, method, _, _ in BAD_CALLS}
    assert tasks == {("api", m) for m in ("create_instance", "start_instance", "stop_instance",
                                          "terminate_instance", "create_volume",
                                          "show_instance", "list_instances", "show_volume",
                                          "list_volumes")} | {
        ("scheduler", m) for m in ("schedule_instance", "schedule_start_instance",
                                   "schedule_volume")}
    for endpoint, method, make_args, error_type in BAD_CALLS:
        args = make_args(c)
        before = counts(c)
        error = rpc_error(c["client"], endpoint, method, *args)
        assert (method, error.error_type) == (method, error_type), error.message
        assert counts(c) == before, f"{endpoint}.{method}{tuple(args)} wrote something"


# --- placement and the agents ----------------------------------------------------------------

def test_an_instance_is_placed_and_booted_by_its_hosts_agent(cluster):
    c = cluster
    doc = c["api"].create_instance(request(c, volumes=[{"volume_type": "local",
                                                         "size": "20G"}]))
    assert doc["state"] == "scheduling" and doc["host_node"] is None
    doc = wait_state(c, doc["id"], "running")
    assert doc["host_node"] in c["hosts"] and doc["status"] == "online"
    node = c["hosts"][doc["host_node"]]
    [vif] = doc["vif"]
    assert vif["network_id"] == c["network"] and vif["ipv4_addr"].startswith("10.20.0.")
    assert {v["state"] for v in doc["volume"]} == {"attached"}

    # The agent reports the instance running before it reports the job finished.
    jobs = wait_for(lambda: (js := {j.job_name: j for j in jobs_of(c, doc["id"])}) and all(
        j.state == "finished" for j in js.values()) and js, "the instance's jobs finished",
        WAIT_SEC)
    placement, boot = jobs["schedule_instance"], jobs["run_local_store"]
    assert (placement.queue_name, placement.state, placement.finish_status) == (
        "scheduler", "finished", "success")
    assert (boot.queue_name, boot.state, boot.finish_status) == (
        f"local-store-handle.{node}", "finished", "success")
    # Sent after the placement committed: the agent found the instance pending and booted it.
    [ran] = [e for e in agent_log(c, node) if e["job_id"] == boot.task_id
             and e["phase"] == "finished"]
    assert ran["result"] == {"booted": doc["id"]}
    for other in set(c["hosts"].values()) - {node}:
        assert not any(e["args"][:1] == [doc["id"]] for e in agent_log(c, other))
    assert host_used(c)[doc["host_node"]][0] >= 1
    c["api"].terminate_instance(doc["id"])
    wait_state(c, doc["id"], "terminated")


def test_a_san_booted_instance_runs_once_the_storage_agent_made_its_volume(cluster):
    c = cluster
    doc = c["api"].create_instance(request(c, image_id=c["san_image"]))
    doc = wait_state(c, doc["id"], "running")
    [boot] = doc["volume"]
    assert (boot["volume_type"], boot["state"]) == ("iscsi", "attached")
    names = [j.job_name for j in jobs_of(c, boot["vol_id"])]
    assert names == ["create_volume_and_run_instance"]
    assert "wait_volumes_available" in [j.job_name for j in jobs_of(c, doc["id"])]
    c["api"].terminate_instance(doc["id"])
    wait_state(c, doc["id"], "terminated")


def test_stop_frees_the_host_and_start_places_it_again(cluster):
    c = cluster
    before = host_used(c)
    doc = wait_state(c, c["api"].create_instance(request(c, cpu_cores=2))["id"], "running")
    first_host = doc["host_node"]
    assert host_used(c)[first_host][0] == before[first_host][0] + 2

    stopped = c["api"].stop_instance(doc["id"])
    assert stopped["vif"][0]["ipv4_addr"]  # kept until the agent confirms the stop
    doc = wait_state(c, doc["id"], "stopped")
    assert doc["host_node"] is None and doc["vif"][0]["ipv4_addr"] is None
    assert host_used(c) == before  # a stopped instance holds no host capacity

    started = c["api"].start_instance(doc["id"])
    assert started["state"] == "scheduling"
    doc = wait_state(c, doc["id"], "running")
    assert doc["host_node"] in c["hosts"] and doc["vif"][0]["ipv4_addr"]
    assert host_used(c)[doc["host_node"]][0] == before[doc["host_node"]][0] + 2
    names = [(j.job_name, j.finish_status) for j in jobs_of(c, doc["id"])]
    assert ("schedule_start_instance", "success") in names
    assert [n for n, _ in names].count("run_local_store") == 2
    assert [n for n, _ in names].count("stop") == 1

    c["api"].terminate_instance(doc["id"])
    doc = wait_state(c, doc["id"], "terminated")
    assert {v["state"] for v in doc["volume"]} <= {"deleting", "deleted"}
    wait_for(lambda: host_used(c) == before, "the host claim freed by the termination",
             WAIT_SEC)


def test_a_repeated_schedule_instance_job_changes_nothing(cluster):
    c = cluster
    doc = wait_state(c, c["api"].create_instance(request(c))["id"], "running")
    jobs_before = [(j.job_name, j.queue_name) for j in jobs_of(c, doc["id"])]
    used = host_used(c)
    # A duplicate delivery through the ledger and the outbox, as a redelivered job would be.
    with unit_of_work(c["db_url"]) as session:
        job_id = outbox.jobs.submit(session, "scheduler", "schedule_instance", doc["id"],
                                    resource_id=doc["id"])
        row_id = session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.task_id == job_id)).one()
    assert relay.publish_rows(relay.publisher(c["broker"]), [row_id], db_url=c["db_url"]) == 1
    job = wait_for(lambda: finished(c, job_id), "the repeated job finished", WAIT_SEC)
    assert job.finish_status == "success"
    # And called directly: the answer says why nothing happened.
    answer = c["client"].call("scheduler", "schedule_instance", doc["id"])
    assert (answer["outcome"], answer["state"]) == ("noop", "running")
    after = show(c, doc["id"])
    assert (after["state"], after["host_node"], after["vif"]) == (
        "running", doc["host_node"], doc["vif"])
    assert host_used(c) == used
    assert [(j.job_name, j.queue_name) for j in jobs_of(c, doc["id"])] == [
        *jobs_before, ("schedule_instance", "scheduler")]
    c["api"].terminate_instance(doc["id"])
    wait_state(c, doc["id"], "terminated")


def test_an_instance_no_host_can_take_is_terminated_with_the_reason(cluster):
    c = cluster
    used = host_used(c)
    # 10 cores: the hosts together have them (the API accepts), no single host does.
    doc = c["api"].create_instance(request(c, cpu_cores=10))
    doc = wait_state(c, doc["id"], "terminated")
    assert doc["placement_error"].startswith("InsufficientCapacity: ")
    assert doc["host_node"] is None and doc["vif"] == []
    assert {v["state"] for v in doc["volume"]} == {"deleted"}
    # The job ended in the transaction that terminated the instance, with its reason.
    job = jobs_of(c, doc["id"])[0]
    assert (job.job_name, job.state, job.finish_status) == (
        "schedule_instance", "finished", "fail")
    assert job.finish_message["error_type"] == "InsufficientCapacity"
    assert job.finish_message["message"] == doc["placement_error"].split(": ", 1)[1]
    assert host_used(c) == used


def test_a_caller_of_a_failing_placement_task_gets_the_typed_error(cluster):
    c = cluster
    with unit_of_work(c["db_url"]) as session:  # waiting for placement, no job sent yet
        inst = make.instance(session, state="scheduling", cpu_cores=10).canonical_uuid
    error = rpc_error(c["client"], "scheduler", "schedule_instance", inst)
    assert error.error_type == "InsufficientCapacity"
    doc = show(c, inst)  # the failure was committed before the task failed
    assert doc["state"] == "terminated"
    assert doc["placement_error"] == f"InsufficientCapacity: {error.message}"


def test_a_failed_start_leaves_the_instance_stopped_with_the_reason(cluster):
    c = cluster
    doc = wait_state(c, c["api"].create_instance(request(c, cpu_cores=6))["id"], "running")
    c["api"].stop_instance(doc["id"])
    wait_state(c, doc["id"], "stopped")
    hog = wait_state(c, c["api"].create_instance(request(c, cpu_cores=6))["id"], "running")
    other = wait_state(c, c["api"].create_instance(request(c, cpu_cores=6))["id"], "running")
    c["api"].start_instance(doc["id"])  # 6 cores: no host has them any more
    try:
        doc = wait_state(c, doc["id"], "stopped")
        assert doc["placement_error"].startswith("InsufficientCapacity: ")

        def start_job_finished() -> QueuedJob | None:
            # The ledger hears the outcome after the commit (the job's link_error callback).
            [job] = [j for j in jobs_of(c, doc["id"]) if j.job_name == "schedule_start_instance"]
            return job if job.state == "finished" else None

        job = wait_for(start_job_finished, "the start job finished in the ledger")
        assert (job.finish_status, job.finish_message["error_type"]) == (
            "fail", "InsufficientCapacity")
    finally:  # the hosts free again for the next tests, whatever happened here
        for inst in (doc["id"], hog["id"], other["id"]):
            c["api"].terminate_instance(inst)
        for inst in (doc["id"], hog["id"], other["id"]):
            wait_state(c, inst, "terminated")


def test_volumes_are_placed_or_created_on_the_named_storage_node(cluster):
    c = cluster
    placed = c["api"].create_volume({"volume_size": 100})
    named = c["api"].create_volume({"volume_size": 50, "storage_node_id": c["storage_id"]})
    assert (placed["state"], named["state"]) == ("scheduling", "pending")
    for vol in (placed, named):
        doc = wait_for(lambda v=vol: (d := c["api"].show_volume(v["id"]))["state"]
                       == "available" and d, f"{vol['id']} available", WAIT_SEC)
        assert (doc["storage_node"], doc["volume_type"]) == (c["storage_id"], "iscsi")
    names = [j.job_name for j in jobs_of(c, placed["id"])]
    assert names == ["schedule_volume", "create_volume"]
    assert [j.job_name for j in jobs_of(c, named["id"])] == ["create_volume"]
    listed = [v["id"] for v in c["api"].list_volumes("available")]
    assert {placed["id"], named["id"]} <= set(listed)
    with unit_of_work(c["db_url"]) as session:
        node = StorageNode.by_cuuid(session, c["storage_id"])
        assert node.used_disk_bytes >= 150 << 20


# --- the CLI ----------------------------------------------------------------------------------

def test_the_cli_runs_stops_and_terminates_an_instance(cluster):
    c = cluster
    ran = cli(c, "instance", "run", "--image", c["image"], "--hypervisor", "kvm", "--cpu", "1",
              "--memory", "256", "--vif", f"eth0={c['network']}", "--name", "cli-web",
              "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert (doc["state"], doc["display_name"]) == ("running", "cli-web")
    listed = cli(c, "instance", "list")
    assert listed.returncode == 0 and doc["id"] in listed.stdout and "running" in listed.stdout
    stopped = cli(c, "instance", "stop", doc["id"], "--wait")
    assert stopped.returncode == 0, stopped.stderr
    assert f"{doc['id']} stopped" in stopped.stdout
    gone = cli(c, "instance", "terminate", doc["id"], "--wait", "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout)["state"] == "terminated"
    refused = cli(c, "instance", "run", "--image", "wmi-nothere0", "--hypervisor", "kvm",
                  "--cpu", "1", "--memory", "256")
    assert refused.returncode == 1 and refused.stderr.startswith("UnknownImageID: ")
    volume = cli(c, "volume", "create", "--size", "20", "--wait")
    assert volume.returncode == 0, volume.stderr
    assert "available" in volume.stdout


def test_allocation_ratios_through_the_cli_and_a_refusal_that_explains_itself(cluster):
    c = cluster
    first = sorted(c["hosts"])[0]
    try:
        set_ratios = cli(c, "host", "ratios", first, "--cpu", "1.25", "--ram", "1.5")
        assert set_ratios.returncode == 0, set_ratios.stderr
        assert "cpu 8 x 1.25 (host) = 10 offered, " in set_ratios.stdout
        assert "memory MB 16384 x 1.5 (host) = 24576 offered, " in set_ratios.stdout
        listed = cli(c, "nodes", "--json")
        assert listed.returncode == 0, listed.stderr
        row = next(r for r in json.loads(listed.stdout) if r["id"] == first)
        assert (row["cpu_cores"]["total"], row["physical"]["cpu_cores"]) == (10, 8)
        assert row["allocation_ratios"] == {"cpu": {"ratio": 1.25, "source": "host"},
                                            "ram": {"ratio": 1.5, "source": "host"}}
        table = cli(c, "nodes")
        assert "8 x 1.25 (host)" in table.stdout and "16384 x 1 " in table.stdout
        # Bad ratios through a worker: typed, nothing written.
        for args, error_type in (([first, 0], "InvalidParameter"),
                                 ([first, "lots"], "InvalidParameter"),
                                 ([first, True], "InvalidArgument"),
                                 ([first], "InvalidParameter"),
                                 (["hn-nothere0", 2.0], "UnknownHostNodeID"),
                                 (["i-abcdefgh", 2.0], "InvalidArgument")):
            error = rpc_error(c["client"], "api", "set_host_allocation_ratios", *args)
            assert (args, error.error_type) == (args, error_type), error.message
        refused = cli(c, "host", "ratios", first, "--cpu", "0.0001")
        assert refused.returncode == 1 and refused.stderr.startswith("InvalidParameter: ")
        with unit_of_work(c["db_url"], readonly=True) as session:
            host = HostNode.by_cuuid(session, first)
            assert (host.cpu_allocation_ratio_milli, host.ram_allocation_ratio_milli) == (
                1250, 1500)
        # 11 cores: the hosts together offer them (the API accepts), neither alone does.
        doc = wait_state(c, c["api"].create_instance(request(c, cpu_cores=11))["id"],
                         "terminated")
        shown = cli(c, "instance", "show", doc["id"])
        assert shown.returncode == 0, shown.stderr
        assert (f"placement_error: InsufficientCapacity: 0/2 hosts available for {doc['id']} "
                "(11 cpu cores, 512 MB memory, ") in shown.stdout
        assert "x86_64 kvm): 2 short of cpu\n" in shown.stdout
    finally:
        back = cli(c, "host", "ratios", first, "--cpu", "default", "--ram", "default")
        assert back.returncode == 0, back.stderr


def test_placement_groups_through_the_cli(cluster):
    c = cluster
    made = cli(c, "group", "create", f"spread-{new_uuid()}", "--policy", "anti-affinity",
               "--json")
    assert made.returncode == 0, made.stderr
    group = json.loads(made.stdout)
    assert (group["policy"], group["max_per_host"], group["members"]) == ("anti-affinity", 1, [])
    members = []
    for _ in range(2):  # two hosts: one member on each
        ran = cli(c, "instance", "run", "--image", c["image"], "--hypervisor", "kvm", "--cpu",
                  "1", "--memory", "512", "--vif", f"eth0={c['network']}", "--group",
                  group["id"], "--wait", "--json")
        assert ran.returncode == 0, ran.stderr
        members.append(json.loads(ran.stdout))
    assert {m["host_node"] for m in members} == set(c["hosts"])
    third = wait_state(c, c["api"].create_instance(
        request(c, placement_group=group["id"]))["id"], "terminated")
    assert "2 excluded by anti-affinity of group spread-" in third["placement_error"]
    shown = cli(c, "group", "show", group["id"])
    assert shown.returncode == 0, shown.stderr
    assert all(f"{m['id']} on {m['host_node']}" in shown.stdout for m in members)
    listed = cli(c, "group", "list", "--json")
    assert group["id"] in {g["id"] for g in json.loads(listed.stdout)}
    refused = cli(c, "group", "delete", group["id"])  # members alive
    assert refused.returncode == 1 and refused.stderr.startswith("DestroyRefused: ")
    for member in members:
        c["api"].terminate_instance(member["id"])
        wait_state(c, member["id"], "terminated")
    deleted = cli(c, "group", "delete", group["id"], "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted_at"] is not None
    assert group["id"] not in {g["id"] for g in json.loads(cli(c, "group", "list",
                                                                "--json").stdout)}


# --- bulk launch -----------------------------------------------------------------------------

def launch_jobs(c: dict, first_id: str) -> list[QueuedJob]:
    return [j for j in jobs_of(c, first_id) if j.job_name == "schedule_launch"]


def test_a_bulk_launch_runs_every_instance_booted_once(cluster):
    c = cluster
    docs = c["api"].create_instances(request(c), 4, 3)
    assert [d["state"] for d in docs] == ["scheduling"] * 4 and len({d["id"] for d in docs}) == 4
    ran = [wait_state(c, d["id"], "running") for d in docs]
    assert {d["host_node"] for d in ran} <= set(c["hosts"])
    [job] = wait_for(lambda: (js := launch_jobs(c, docs[0]["id"])) and js[0].state == "finished"
                     and js, "the launch job finished", WAIT_SEC)
    assert (job.finish_status, job.params["args"]) == ("success", [[d["id"] for d in docs], 3])
    boots = [e["result"]["booted"] for node in c["hosts"].values()
             for e in agent_log(c, node) if "booted" in (e.get("result") or {})]
    for doc in ran:  # each booted once
        assert boots.count(doc["id"]) == 1
    for doc in ran:
        c["api"].terminate_instance(doc["id"])
    for doc in ran:
        wait_state(c, doc["id"], "terminated")


def test_a_bulk_launch_that_cannot_reach_min_count_places_none(cluster):
    c = cluster
    used = host_used(c)
    # 8 cores each: two hosts take at most two, and min_count is three.
    docs = c["api"].create_instances(request(c, cpu_cores=8), 3)
    ended = [wait_state(c, d["id"], "terminated") for d in docs]
    for doc in ended:
        assert doc["placement_error"].startswith(
            "InsufficientCapacity: only ") and "of min_count 3 could be placed" in \
            doc["placement_error"]
        assert doc["host_node"] is None and doc["vif"] == []
    [job] = wait_for(lambda: (js := launch_jobs(c, docs[0]["id"])) and js[0].state == "finished"
                     and js, "the launch job finished", WAIT_SEC)
    assert (job.finish_status, job.finish_message["error_type"]) == ("fail",
                                                                     "InsufficientCapacity")
    assert host_used(c) == used
    for doc in docs:
        assert not any(e["args"][:1] == [doc["id"]] for node in c["hosts"].values()
                       for e in agent_log(c, node))


def test_bad_bulk_launches_are_typed_and_write_nothing(cluster):
    c = cluster
    for args, error_type in (([request(c), 0], "InvalidParameter"),
                             ([request(c), 3, 4], "InvalidParameter"),
                             ([request(c), "3"], "InvalidArgument"),  # the task's types
                             ([request(c, hostname="web"), 2], "InvalidParameter"),
                             ([request(c, image_id="wmi-nothere0"), 2], "UnknownImageID"),
                             ([request(c)], "InvalidArgument")):
        before = counts(c)
        assert rpc_error(c["client"], "api", "create_instances", *args).error_type == error_type
        assert counts(c) == before


def test_the_cli_launches_several_instances(cluster):
    c = cluster
    ran = cli(c, "instance", "run", "--image", c["image"], "--hypervisor", "kvm", "--cpu", "1",
              "--memory", "256", "--vif", f"eth0={c['network']}", "--count", "2",
              "--min-count", "1", "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    docs = json.loads(ran.stdout)
    assert [d["state"] for d in docs] == ["running", "running"]
    for doc in docs:
        c["api"].terminate_instance(doc["id"])
    refused = cli(c, "instance", "run", "--image", c["image"], "--hypervisor", "kvm", "--cpu",
                  "1", "--memory", "256", "--count", "2", "--min-count", "3")
    assert refused.returncode == 1 and refused.stderr.startswith("InvalidParameter: ")
