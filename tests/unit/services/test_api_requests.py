"""The API side (``collector.services.api.instances`` and ``.volumes``) with a session alone:
every refused request is a typed error and writes nothing; accepted ones leave exactly the
rows and jobs of spec 1.8.

The database is the session's (``tests/conftest.py``), which other tests commit to: the
world takes the nodes they left offline in its own transaction, so the domain-wide checks
(hypervisor offered, total capacity) see the world's nodes alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update

from collector import errors
from collector.ids import new_uuid
from collector.models import (
    Base,
    HostNode,
    Image,
    Instance,
    IpLease,
    Network,
    NodeState,
    QueuedJob,
    SecurityGroup,
    SshKeyPair,
    StorageAllocation,
    StorageNode,
    Volume,
)
from collector.models.networks import ipv4_to_i
from collector.models.outbox import OutboxMessage
from collector.services.api import instances as api
from collector.services.api import volumes as volume_api
from workers.demo.world import make

VENDOR = 0x02C0FE  # no world builder's MAC range is of this vendor: the database is shared
GiB = 1 << 30


@pytest.fixture()
def s(session):
    """conftest's session (rolled back after the test), by a short name."""
    return session


@dataclass
class World:
    host: HostNode
    image: Image
    net: Network
    nat: Network
    sg: SecurityGroup
    storage: StorageNode


@pytest.fixture()
def w(s) -> World:
    s.execute(update(NodeState).where(NodeState.state == "online").values(state="offline"))
    host = make.host_node(s, offering_cpu_cores=16, offering_memory_size=32768,
                                 offering_disk_space_mb=100 * 1024)
    image = make.image(s)
    net = make.network(s, "10.0.0.0/24")
    nat = make.network(s, "192.0.2.0/24")
    make.mac_range(s, VENDOR, 0x100000, 0x10ffff)
    storage = make.storage_node(s)
    storage.offering_disk_space_mb = 100 * 1024
    s.flush()
    return World(host, image, net, nat, make.security_group(s), storage)


def request(w: World, **params: Any) -> dict[str, Any]:
    base = {"image_id": w.image.canonical_uuid, "hypervisor": "kvm", "cpu_cores": 1,
            "memory_size": 512}
    return {**base, **params}


def snapshot(s) -> dict[str, Any]:
    """Every table's row count and the hosts' and storage nodes' claimed capacity."""
    s.flush()
    out: dict[str, Any] = {t.name: s.scalar(select(func.count()).select_from(t))
                           for t in Base.metadata.sorted_tables}
    out["host_used"] = s.execute(select(HostNode.id, HostNode.used_cpu_cores,
                                        HostNode.used_memory_size, HostNode.used_disk_bytes)
                                 .order_by(HostNode.id)).all()
    out["storage_used"] = s.execute(select(StorageNode.id, StorageNode.used_disk_bytes)
                                    .order_by(StorageNode.id)).all()
    return out


def refused(s, error: type[Exception], call, *args: Any) -> Exception:
    """``call(s, *args)`` raises exactly ``error`` and the database is as before."""
    before = snapshot(s)
    with pytest.raises(errors.CollectorError) as info:
        call(s, *args)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert snapshot(s) == before
    return info.value


# --- create_instance: refused --------------------------------------------------------------

def _image_deleted(s, w):
    w.image.destroy()
    return {}


def _image_creating(s, w):
    w.image.state = "creating"
    return {}


@pytest.mark.parametrize("change, error", [
    (lambda s, w: {"image_id": None}, errors.InvalidParameter),
    (lambda s, w: {"image_id": "wmi-nothere0"}, errors.UnknownImageID),
    (lambda s, w: {"image_id": "i-abcdefgh"}, errors.InvalidParameter),
    (lambda s, w: {"image_id": 42}, errors.InvalidParameter),
    (_image_deleted, errors.UnknownImageID),
    (_image_creating, errors.InvalidParameter),
    (lambda s, w: {"colour": "blue"}, errors.InvalidParameter),
], ids=["image-missing", "image-unknown", "image-wrong-prefix", "image-not-text",
        "image-deleted", "image-not-available", "unknown-parameter"])
def test_image_and_unknown_parameters_are_refused(s, w, change, error):
    params = request(w, **change(s, w))
    refused(s, error, api.create_instance, {k: v for k, v in params.items() if v is not None})


def test_a_request_that_is_not_a_map_is_refused(s, w):
    refused(s, errors.InvalidParameter, api.create_instance, ["image_id", "wmi-x"])


def test_hypervisor_must_be_given_and_offered_by_an_online_enabled_host(s, w):
    refused(s, errors.InvalidParameter, api.create_instance, request(w, hypervisor=None) | {
        "hypervisor": ""})
    odd = f"hv{new_uuid()}"[:20]
    refused(s, errors.InvalidParameter, api.create_instance, request(w, hypervisor=odd))
    disabled = make.host_node(s, hypervisor=odd, scheduling_enabled=False)
    refused(s, errors.InvalidParameter, api.create_instance, request(w, hypervisor=odd))
    make.host_node(s, hypervisor=odd, online=False)
    refused(s, errors.InvalidParameter, api.create_instance, request(w, hypervisor=odd))
    disabled.scheduling_enabled = True
    s.flush()
    assert api.create_instance(s, request(w, hypervisor=odd))["state"] == "scheduling"


@pytest.mark.parametrize("params", [
    {"cpu_cores": 0}, {"cpu_cores": 129}, {"cpu_cores": "2"}, {"cpu_cores": True},
    {"cpu_cores": 1.5}, {"memory_size": 127}, {"memory_size": 1_000_000},
    {"memory_size": "512"}, {"cpu_cores": None},
])
def test_cpu_and_memory_bounds(s, w, params):
    refused(s, errors.InvalidParameter, api.create_instance,
            {k: v for k, v in request(w, **params).items() if v is not None})


def test_domain_capacity_counts_every_online_enabled_host(s, w):
    refused(s, errors.OutOfHostCapacity, api.create_instance, request(w, cpu_cores=17))
    refused(s, errors.OutOfHostCapacity, api.create_instance,
            request(w, memory_size=32769))
    make.host_node(s, offering_cpu_cores=16)
    assert api.create_instance(s, request(w, cpu_cores=17))["state"] == "scheduling"


@pytest.mark.parametrize("vifs, error", [
    (["eth0"], errors.InvalidParameter),
    ("{not json", errors.InvalidParameter),
    ('["eth0"]', errors.InvalidParameter),
    ({"eth0": "nw-abcdefgh"}, errors.InvalidParameter),
    ({"eth0": {"network": "nw-nothere0"}}, errors.UnknownNetworkID),
    ({"eth0": {"network": "sg-abcdefgh"}}, errors.InvalidParameter),
    ({"eth0": {"network": 7}}, errors.InvalidParameter),
    ({"eth0": {"netwrok": "nw-abcdefgh"}}, errors.InvalidParameter),
    ({"eth0": {"nat_network": "nw-nothere0"}}, errors.UnknownNetworkID),
    ({"eth0": {"index": "first"}}, errors.InvalidParameter),
    ({"eth0": {"index": 1}, "eth1": {"index": "1"}}, errors.InvalidParameter),
], ids=["list", "bad-json", "json-list", "vif-not-a-map", "unknown-network", "wrong-prefix",
        "network-not-text", "unknown-key", "unknown-nat-network", "index-not-a-number",
        "index-twice"])
def test_malformed_vifs_are_refused(s, w, vifs, error):
    refused(s, error, api.create_instance, request(w, vifs=vifs))


def _mac(device: int) -> str:
    return f"{(VENDOR << 24) | device:012x}"


@pytest.mark.parametrize("vif, error", [
    ({"mac_addr": "52540010000"}, errors.InvalidMacAddress),
    ({"mac_addr": "zz5400100000"}, errors.InvalidMacAddress),
    ({"mac_addr": "leased"}, errors.DuplicateMacAddress),
    ({"mac_addr": _mac(0x200000)}, errors.MacNotInRange),
    ({"ipv4_addr": "10.0.0.300"}, errors.InvalidIPAddress),
    ({"ipv4_addr": "10.0.1.20"}, errors.IPAddressNotInSegment),
    ({"ipv4_addr": "10.0.0.5"}, errors.IpNotInDhcpRange),
    ({"ipv4_addr": "leased"}, errors.DuplicateIPAddress),
    ({"ipv4_addr": "10.0.0.1"}, errors.ReservedIPAddress),
    ({"nat_network": "nat", "nat_ipv4_addr": "198.51.100.20"}, errors.IPAddressNotInSegment),
    ({"nat_ipv4_addr": "192.0.2.20"}, errors.InvalidParameter),
], ids=["mac-short", "mac-not-hex", "mac-leased", "mac-out-of-range", "ip-invalid",
        "ip-outside-segment", "ip-outside-dhcp", "ip-leased", "ip-gateway",
        "nat-ip-outside-segment", "nat-ip-without-nat-network"])
def test_manual_addresses_are_checked(s, w, vif, error):
    vif = dict(vif)
    if vif.get("ipv4_addr") == "10.0.0.1":  # the gateway, inside the DHCP range here
        w.net.ipv4_gw = "10.0.0.40"
        vif["ipv4_addr"] = "10.0.0.40"
    if vif.get("mac_addr") == "leased":
        vif["mac_addr"] = make.vif(s, None, None).mac_addr
    if vif.get("ipv4_addr") == "leased":
        make.lease_ip(s, None, w.net, "10.0.0.20")
        vif["ipv4_addr"] = "10.0.0.20"
    if vif.get("nat_network") == "nat":
        vif["nat_network"] = w.nat.canonical_uuid
    vif = {"network": w.net.canonical_uuid, **vif}
    if "ipv4_addr" not in vif and "mac_addr" not in vif and "nat_network" not in vif:
        vif.pop("network")
    refused(s, error, api.create_instance, request(w, vifs={"eth0": vif}))


def test_one_address_requested_twice_in_a_request_is_refused(s, w):
    nw = w.net.canonical_uuid
    refused(s, errors.DuplicateIPAddress, api.create_instance, request(w, vifs={
        "eth0": {"network": nw, "ipv4_addr": "10.0.0.20"},
        "eth1": {"network": nw, "ipv4_addr": "10.0.0.20"}}))
    refused(s, errors.DuplicateMacAddress, api.create_instance, request(w, vifs={
        "eth0": {"network": nw, "mac_addr": _mac(0x100001)},
        "eth1": {"network": nw, "mac_addr": _mac(0x100001)}}))


@pytest.mark.parametrize("where", ["top", "vif", "vif-list"])
def test_unknown_security_groups_are_refused(s, w, where):
    params = {"top": {"security_groups": [w.sg.canonical_uuid, "sg-nothere0"]},
              "vif": {"vifs": {"eth0": {"network": w.net.canonical_uuid,
                                        "security_groups": "sg-nothere0"}}},
              "vif-list": {"vifs": {"eth0": {"security_groups": ["", "sg-nothere0"]}}}}[where]
    refused(s, errors.UnknownSecurityGroupID, api.create_instance, request(w, **params))


@pytest.mark.parametrize("volumes, error", [
    ({"v1": {"size": GiB}}, errors.InvalidParameter),
    ({"v1": {"volume_type": "fast", "size": GiB}}, errors.InvalidParameter),
    ({"v1": {"volume_type": "local"}}, errors.InvalidParameter),
    ({"v1": {"volume_type": "local", "size": "ten"}}, errors.InvalidParameter),
    ({"v1": {"volume_type": "local", "size": -1}}, errors.InvalidParameter),
    ({"v1": {"volume_type": "shared", "backup_object_id": "bo-nothere0"}},
     errors.UnknownBackupObjectID),
    ({"v1": {"volume_type": "local", "size": GiB, "iops": 9}}, errors.InvalidParameter),
    ({"v1": "10G"}, errors.InvalidParameter),
    ("10G", errors.InvalidParameter),
], ids=["no-type", "bad-type", "no-size", "size-text", "size-negative", "unknown-backup",
        "unknown-key", "entry-not-a-map", "not-a-map"])
def test_bad_volumes_are_refused(s, w, volumes, error):
    refused(s, error, api.create_instance, request(w, volumes=volumes))


def test_explicit_host_is_checked_and_its_capacity_claimed(s, w):
    refused(s, errors.UnknownHostNodeID, api.create_instance,
            request(w, host_node_id="hn-nothere0"))
    refused(s, errors.InvalidParameter, api.create_instance, request(w, host_id="i-abcdefgh"))
    offline = make.host_node(s, online=False)
    refused(s, errors.InvalidHostNodeID, api.create_instance,
            request(w, host_node_id=offline.canonical_uuid))
    other_arch = make.host_node(s, arch="x86")
    refused(s, errors.IncompatibleHostNode, api.create_instance,
            request(w, host_node_id=other_arch.canonical_uuid))
    small = make.host_node(s, offering_cpu_cores=2, offering_memory_size=1024,
                                  offering_disk_space_mb=100 * 1024)
    refused(s, errors.OutOfHostCapacity, api.create_instance,
            request(w, host_id=small.canonical_uuid, cpu_cores=4))
    refused(s, errors.OutOfHostCapacity, api.create_instance,  # local disk counts too
            request(w, host_id=small.canonical_uuid,
                    volumes=[{"volume_type": "local", "size": "200G"}]))
    doc = api.create_instance(s, request(w, host_pool_id=small.canonical_uuid, cpu_cores=2))
    assert (doc["state"], doc["host_node"]) == ("scheduling", small.canonical_uuid)
    s.refresh(small)
    assert (small.used_cpu_cores, small.used_memory_size) == (2, 512)
    refused(s, errors.OutOfHostCapacity, api.create_instance,  # the claim is held
            request(w, host_node_id=small.canonical_uuid, cpu_cores=1))


@pytest.mark.parametrize("params", [
    {"ha_enabled": "yes"}, {"ha_enabled": 1}, {"hostname": "Bad_Name"}, {"hostname": "-x"},
    {"hostname": "a" * 33}, {"account_id": "shpool"}, {"ssh_key_id": "sg-abcdefgh"},
    {"quota_weight": -1}, {"quota_weight": float("nan")}, {"display_name": "x" * 256},
    {"user_data": 5},
])
def test_other_parameters_are_checked(s, w, params):
    refused(s, errors.InvalidParameter, api.create_instance, request(w, **params))


def test_unknown_ssh_key_and_service_type_are_refused(s, w):
    refused(s, errors.NotFound, api.create_instance, request(w, ssh_key_id="ssh-nothere0"))
    refused(s, errors.UnknownServiceType, api.create_instance, request(w, service_type="gold"))


def test_hostname_is_unique_per_account(s, w):
    api.create_instance(s, request(w, hostname="web1"))
    refused(s, errors.InvalidParameter, api.create_instance, request(w, hostname="WEB1"))
    other = api.create_instance(s, request(w, hostname="web1", account_id="a-other000"))
    assert other["hostname"] == "web1"


# --- create_instance: accepted -------------------------------------------------------------

def _jobs(s, **where: Any) -> list[QueuedJob]:
    return list(s.scalars(select(QueuedJob).filter_by(**where).order_by(QueuedJob.id)))


def test_an_instance_is_created_in_scheduling_with_its_placement_job(s, w):
    before = snapshot(s)
    doc = api.create_instance(s, request(w, vifs={"eth0": {"network": w.net.canonical_uuid}},
                                         volumes={"data": {"volume_type": "local",
                                                           "size": "20G"}},
                                         hostname="Web1", ha_enabled="true",
                                         display_name="web"))
    inst = Instance.by_cuuid(s, doc["id"])
    assert (doc["state"], inst.state, inst.status) == ("scheduling", "scheduling", "init")
    assert (doc["hostname"], doc["ha_enabled"], doc["display_name"]) == ("web1", True, "web")
    assert doc["host_node"] is None and doc["vif"] == []  # vifs are the scheduler's
    assert {v.state for v in inst.volumes} == {"scheduling"}
    boot = Volume.by_cuuid(s, inst.boot_volume_id)
    assert (boot.volume_type, boot.size, boot.instance_id) == ("local", 10 * GiB, inst.id)
    assert sorted(v.size for v in inst.volumes) == [10 * GiB, 20 * GiB]
    assert inst.request_params["vifs"] == {"eth0": {"network": w.net.canonical_uuid}}
    [job] = _jobs(s, resource_id=doc["id"])
    assert (job.queue_name, job.job_name, job.params) == (
        "scheduler", "schedule_instance", {"args": [doc["id"]]})
    [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == job.task_id))
    assert (row.kind, row.name, row.queue) == ("job", "scheduler.schedule_instance",
                                               "scheduler")
    after = snapshot(s)
    assert after["host_used"] == before["host_used"]  # no host is claimed by the API
    assert after["host_allocations"] == before["host_allocations"]


def _ssh_key(s) -> str:
    key = SshKeyPair(account_id="a-shpoolxx", finger_print="aa:bb", public_key="ssh-rsa AAAA",
                     display_name="k")
    s.add(key)
    s.flush()
    return key.canonical_uuid


@pytest.mark.parametrize("shape", ["plain", "everything", "san boot", "named host",
                                   "manual address", "launch"])
def test_the_answer_is_the_document_the_database_then_shows(s, w, shape):
    """create_instance answers from the rows it wrote, without reading them back: every
    field must be what show_instance reads from the database afterwards."""
    params = {
        "plain": {},
        "everything": {"ssh_key_id": _ssh_key(s), "hostname": "db1", "display_name": "db",
                       "ha_enabled": "true", "quota_weight": 2.5, "user_data": "u",
                       "volumes": {"data": {"volume_type": "local", "size": "20G"},
                                   "logs": {"volume_type": "shared", "size": "5G",
                                            "display_name": "logs"}},
                       "vifs": {"eth0": {"network": w.net.canonical_uuid,
                                         "security_groups": [w.sg.canonical_uuid]}}},
        "san boot": {"image_id": make.image(s, local=False).canonical_uuid},
        "named host": {"host_node_id": w.host.canonical_uuid},
        "manual address": {"vifs": {"eth0": {"network": w.net.canonical_uuid,
                                             "ipv4_addr": "10.0.0.60"}}},
        "launch": {},
    }[shape]
    if shape == "launch":
        docs = api.create_instances(s, request(w, **params), 3)
    else:
        docs = [api.create_instance(s, request(w, **params))]
    s.flush()
    s.expire_all()
    for doc in docs:
        assert doc == api.show_instance(s, doc["id"])
    assert docs[0]["volume"] and docs[0]["volume"][0]["boot"] is True


def test_san_boot_volume_is_left_for_storage_placement(s, w):
    image = make.image(s, local=False)
    doc = api.create_instance(s, request(w, image_id=image.canonical_uuid))
    assert [v["volume_type"] for v in doc["volume"]] == [None]


def test_manual_addresses_are_held_from_the_answer_on(s, w):
    mac = _mac(0x100007)
    doc = api.create_instance(s, request(w, vifs={
        "eth0": {"network": w.net.canonical_uuid, "ipv4_addr": "10.0.0.50", "mac_addr": mac},
        "eth1": {"network": w.net.canonical_uuid}}))
    by_name = {v["device_index"]: v for v in doc["vif"]}
    assert by_name[0]["ipv4_addr"] == "10.0.0.50"
    assert by_name[0]["mac_addr"].replace(":", "") == mac
    assert by_name[1]["ipv4_addr"] is not None  # every vif gets its address now
    refused(s, errors.DuplicateIPAddress, api.create_instance, request(w, vifs={
        "eth0": {"network": w.net.canonical_uuid, "ipv4_addr": "10.0.0.50"}}))
    refused(s, errors.DuplicateMacAddress, api.create_instance, request(w, vifs={
        "eth0": {"network": w.net.canonical_uuid, "mac_addr": mac}}))


# --- start / stop / terminate ---------------------------------------------------------------

def _running(s, w) -> Instance:
    inst = make.running_instance(s, host=w.host, storage=w.storage, net=w.net,
                                        ipv4="10.0.0.30")
    return inst


@pytest.mark.parametrize("call, state", [
    (api.start_instance, "running"), (api.start_instance, "scheduling"),
    (api.stop_instance, "stopped"), (api.stop_instance, "halted"),
    (api.stop_instance, "scheduling"),
])
def test_start_and_stop_only_from_their_state(s, w, call, state):
    inst = make.instance(s, w.host, w.image, state=state)
    refused(s, errors.InvalidInstanceState, call, inst.canonical_uuid)


@pytest.mark.parametrize("call", [api.start_instance, api.stop_instance,
                                  api.terminate_instance, api.show_instance])
def test_unknown_or_malformed_instance_ids(s, w, call):
    refused(s, errors.UnknownInstanceID, call, "i-nothere0")
    refused(s, errors.InvalidArgument, call, "vol-abcdefgh")


def test_stop_keeps_the_addresses_and_sends_stop_to_the_host(s, w):
    inst = _running(s, w)
    doc = api.stop_instance(s, inst.canonical_uuid)
    assert doc["state"] == "running"  # the agent reports stopping / stopped
    # Its address stays its own until the agent confirms the stop.
    assert [v["ipv4_addr"] for v in doc["vif"]] == ["10.0.0.30"]
    assert s.scalar(select(func.count()).select_from(IpLease).where(
        IpLease.network_id == w.net.id, IpLease.ipv4 == ipv4_to_i("10.0.0.30"))) == 1
    [job] = _jobs(s, resource_id=inst.canonical_uuid)
    assert (job.queue_name, job.job_name) == (f"hva-handle.{w.host.node_id}", "stop")


def test_start_puts_a_stopped_instance_back_to_scheduling(s, w):
    inst = make.instance(s, None, w.image, state="stopped", placement_error="old")
    doc = api.start_instance(s, inst.canonical_uuid)
    assert (doc["state"], doc["placement_error"]) == ("scheduling", None)
    [job] = _jobs(s, resource_id=inst.canonical_uuid)
    assert (job.queue_name, job.job_name) == ("scheduler", "schedule_start_instance")


def test_terminate_sends_terminate_to_the_host_of_a_live_instance(s, w):
    inst = _running(s, w)
    doc = api.terminate_instance(s, inst.canonical_uuid)
    assert doc["state"] == "running"
    [job] = _jobs(s, resource_id=inst.canonical_uuid)
    assert (job.queue_name, job.job_name) == (f"hva-handle.{w.host.node_id}", "terminate")


def test_terminate_cancels_a_pending_placement_and_frees_what_it_held(s, w):
    before = snapshot(s)
    doc = api.create_instance(s, request(w, host_node_id=w.host.canonical_uuid, cpu_cores=4,
                                         vifs={"eth0": {"network": w.net.canonical_uuid,
                                                        "ipv4_addr": "10.0.0.60"}}))
    doc = api.terminate_instance(s, doc["id"])
    assert doc["state"] == "terminated" and doc["terminated_at"]
    assert {v["state"] for v in doc["volume"]} == {"deleted"}
    after = snapshot(s)
    assert after["host_used"] == before["host_used"]
    assert (after["ip_leases"], after["mac_leases"], after["hostname_leases"]) == (
        before["ip_leases"], before["mac_leases"], before["hostname_leases"])
    jobs = _jobs(s, resource_id=doc["id"])
    assert [j.job_name for j in jobs] == ["schedule_instance"]  # nothing for any agent
    assert api.terminate_instance(s, doc["id"])["state"] == "terminated"  # repeat: no-op
    assert len(_jobs(s, resource_id=doc["id"])) == 1


def test_terminate_of_a_stopped_instance_is_immediate(s, w):
    inst = make.instance(s, None, w.image, state="stopped")
    assert api.terminate_instance(s, inst.canonical_uuid)["state"] == "terminated"
    assert _jobs(s, resource_id=inst.canonical_uuid) == []


def test_list_and_show(s, w):
    account = f"a-{new_uuid()}"  # alone in it: other tests commit instances of theirs
    first = api.create_instance(s, request(w, account_id=account))
    second = api.create_instance(s, request(w, account_id=account))
    api.terminate_instance(s, first["id"])
    listed = [d["id"] for d in api.list_instances(s, account_id=account)]
    assert listed == [second["id"]]
    assert [d["id"] for d in api.list_instances(s, include_terminated=True)][:2] == [
        second["id"], first["id"]]  # newest first
    assert [d["id"] for d in api.list_instances(s, state="terminated", account_id=account)] == [
        first["id"]]
    assert api.show_instance(s, second["id"]) == second
    with pytest.raises(errors.InvalidArgument):
        api.list_instances(s, limit=0)


# --- volumes --------------------------------------------------------------------------------

@pytest.mark.parametrize("params, error", [
    ({}, errors.InvalidParameter),
    ({"volume_size": 9}, errors.InvalidParameter),
    ({"volume_size": 3001}, errors.InvalidParameter),
    ({"volume_size": "10"}, errors.InvalidParameter),
    ({"size": 10}, errors.InvalidParameter),
    ({"backup_object_id": "bo-nothere0"}, errors.UnknownBackupObjectID),
    ({"volume_size": 10, "storage_node_id": "sn-nothere0"}, errors.UnknownStorageNodeID),
    ({"volume_size": 10, "storage_node_id": "hn-abcdefgh"}, errors.InvalidParameter),
    ({"volume_size": 10, "service_type": "gold"}, errors.UnknownServiceType),
])
def test_bad_volume_requests_are_refused(s, w, params, error):
    refused(s, error, volume_api.create_volume, params)


def test_a_volume_is_placed_by_the_scheduler(s, w):
    doc = volume_api.create_volume(s, {"volume_size": 100, "display_name": "data"})
    assert (doc["state"], doc["size"], doc["volume_type"]) == ("scheduling", 100 << 20, None)
    [job] = _jobs(s, resource_id=doc["id"])
    assert (job.queue_name, job.job_name) == ("scheduler", "schedule_volume")


def test_storage_capacity_is_checked(s, w):
    for node in s.scalars(select(StorageNode)):
        node.used_disk_bytes = node.offering_disk_space_mb * (1 << 20) - (50 << 20)
    s.flush()
    refused(s, errors.OutOfDiskSpace, volume_api.create_volume, {"volume_size": 100})
    refused(s, errors.OutOfDiskSpace, volume_api.create_volume,
            {"volume_size": 100, "storage_node_id": w.storage.canonical_uuid})


def test_a_volume_on_a_named_storage_node_is_claimed_and_sent_there(s, w):
    offline = make.storage_node(s, online=False)
    refused(s, errors.InvalidParameter, volume_api.create_volume,
            {"volume_size": 10, "storage_node_id": offline.canonical_uuid})
    doc = volume_api.create_volume(s, {"volume_size": 100,
                                       "storage_node_id": w.storage.canonical_uuid})
    assert (doc["state"], doc["volume_type"], doc["storage_node"]) == (
        "pending", "iscsi", w.storage.canonical_uuid)
    s.refresh(w.storage)
    assert w.storage.used_disk_bytes == 100 << 20
    # One claim, on that node, of the volume's size (the database is shared with other tests).
    assert s.execute(select(StorageAllocation.storage_node_id, StorageAllocation.disk_bytes)
                     .where(StorageAllocation.storage_node_id == w.storage.id)).all() == [
        (w.storage.id, 100 << 20)]
    [job] = _jobs(s, resource_id=doc["id"])
    assert (job.queue_name, job.job_name) == (f"sta-handle.{w.storage.node_id}",
                                              "create_volume")
    assert volume_api.show_volume(s, doc["id"]) == doc
    assert doc["id"] in [v["id"] for v in volume_api.list_volumes(s)]
