"""The placement job steps on a real database: placed, repeated, failed, started, volumes."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import delete, select, update

from collector.errors import (
    IncompatibleHostNode,
    InvalidArgument,
    InvalidHostNodeID,
    OutOfHostCapacity,
    UnknownHostNodeID,
    UnknownInstanceID,
    UnknownVolumeID,
)
from collector.models import (
    DhcpRange,
    HostAllocation,
    HostNode,
    Instance,
    IscsiVolume,
    LocalVolume,
    MacLease,
    MacRange,
    NetworkVifIpLease,
    NodeState,
    OutboxMessage,
    QueuedJob,
    StorageAllocation,
    Volume,
)
from collector.scheduling import handlers, placement
from collector.scheduling import placement_config as config
from collector.scheduling import vifs as network
from tests.support.checks import raises_each
from tests.support.scheduling import (
    GB,
    alive_addresses,
    counters_true,
    messages,
    scheduled_events,
    scheduling_instance,
)
from workers.demo.world import make


def test_a_new_local_boot_instance_is_placed_and_booted_after_commit(session, world):
    inst = scheduling_instance(session, world, cpu=2)
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    host = world.hosts[0]  # equal hosts: lowest id
    assert result["outcome"] == "placed" and result["host_node_id"] == host.canonical_uuid
    session.refresh(inst)
    assert (inst.state, inst.host_node_id, inst.placement_error) == ("pending", host.id, None)
    boot = inst.volumes[0]
    assert boot.state == "pending" and session.get(LocalVolume, boot.id) is not None
    (vif,) = inst.network_vifs
    assert vif.mac_addr.startswith("525400") and len(alive_addresses(session, inst)) == 1
    assert messages(session, result) == [(f"local-store-handle.{host.node_id}",
                                          "local-store-handle.run_local_store",
                                          [inst.canonical_uuid])]
    assert len(scheduled_events(session, inst.canonical_uuid)) == 1
    session.refresh(host)
    assert (host.used_cpu_cores, host.used_memory_size, host.used_disk_bytes) == (2, 1024,
                                                                                   10 * GB)
    assert counters_true(session)


def test_shared_volumes_go_to_storage_and_boot_through_it(session, world):
    inst = scheduling_instance(session, world, local=False, shared=(5 * GB,))
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert result["outcome"] == "placed"
    node = world.storage.node_id
    vols = [v.canonical_uuid for v in inst.volumes]
    assert messages(session, result) == [
        (f"sta-handle.{node}", "sta-handle.create_volume_and_run_instance",
         [vol, inst.canonical_uuid]) for vol in vols]  # SAN: no run_local_store
    assert result["storage_node_ids"] == {vol: node for vol in vols}
    assert all(v.state == "pending" and v.volume_type == "iscsi" for v in inst.volumes)
    assert session.get(IscsiVolume, inst.volumes[1].id).iscsi_storage_node_id == \
        world.storage.id
    session.refresh(world.storage)
    assert world.storage.used_disk_bytes == 15 * GB
    session.refresh(world.hosts[0])
    assert world.hosts[0].used_disk_bytes == 0  # nothing local
    assert counters_true(session)


def test_a_repeated_or_late_job_changes_nothing(session, world):
    inst = scheduling_instance(session, world)
    handlers.schedule_instance(session, inst.canonical_uuid)
    before = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
    again = handlers.schedule_instance(session, inst.canonical_uuid)
    assert again == {"outcome": "noop", "instance_id": inst.canonical_uuid, "state": "pending"}
    inst.state = "running"
    session.flush()
    assert handlers.schedule_instance(session, inst.canonical_uuid)["state"] == "running"
    assert handlers.schedule_start_instance(session, inst.canonical_uuid)["outcome"] == "noop"
    assert session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())
                          .limit(1)) == before
    assert len(inst.network_vifs) == 1 and counters_true(session)


def test_no_room_terminates_the_new_instance_and_releases_everything(session, world):
    vifs = {"eth0": {"network": world.net.canonical_uuid, "ipv4_addr": "10.0.0.1"}}
    vifs["eth0"]["ipv4_addr"] = world.net.ipv4_network.rsplit(".", 1)[0] + ".50"
    inst = scheduling_instance(session, world, mem=8192, vifs=vifs)
    network.create_vifs(session, inst)  # the API held the manual address already
    mac = int(inst.network_vifs[0].mac_addr, 16)
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert result["outcome"] == "failed" and result["error_type"] == "InsufficientCapacity"
    assert result["state"] == "terminated"
    session.refresh(inst)
    assert inst.state == "terminated" and inst.terminated_at is not None
    assert inst.placement_error.startswith("InsufficientCapacity: ")
    assert all(v.state == "deleted" for v in inst.volumes)
    assert all(v.deleted_at is not None for v in inst.network_vifs)
    assert alive_addresses(session, inst) == []
    assert session.scalar(select(MacLease.id).where(MacLease.mac_addr == mac)) is None
    assert session.scalar(select(HostAllocation.id).where(
        HostAllocation.instance_id == inst.id)) is None
    assert scheduled_events(session, inst.canonical_uuid) == []
    assert counters_true(session)


def test_a_late_failure_rolls_back_the_host_claim(session, world):
    session.execute(delete(MacRange))  # no MAC left: fails after the host was claimed
    inst = scheduling_instance(session, world)
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert (result["outcome"], result["error_type"]) == ("failed", "OutOfMacRange")
    for host in world.hosts:
        session.refresh(host)
        assert host.used_cpu_cores == 0
    assert inst.network_vifs == [] and counters_true(session)
    assert session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == inst.canonical_uuid)).all() == []  # dispatch rolled back
    assert scheduled_events(session, inst.canonical_uuid) == []


def test_after_a_late_failure_the_relay_finds_nothing_to_send(db_url):
    """The dispatch is written before the vifs; a vif failure rolls it back, and the rows
    the after-commit relay is handed no longer exist."""
    from collector.db import UnitOfWork, unit_of_work

    hv = f"kvm-{secrets.token_hex(3)}"
    with unit_of_work(db_url) as session:
        make.host_node(session, hypervisor=hv)
        net = make.network(session, f"10.{secrets.randbelow(200)}.9.0/24")
        session.execute(delete(DhcpRange).where(DhcpRange.network_id == net.id))
        [cuuid] = make.awaiting_placement(session, 1, make.image(session), net, hypervisor=hv)
    with UnitOfWork(db_url) as uow:
        result = handlers.schedule_instance(uow.session, cuuid)
    handed = uow.outbox_ids  # what the task layer hands the relay after the commit
    assert all(cuuid not in str(row.payload) for row in uow.outbox_rows)  # published from memory
    assert result["error_type"] in ("OutOfIpRange", "OutOfMacRange")
    with unit_of_work(db_url, readonly=True) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(handed))).all()
        assert all(cuuid not in str(row.payload) for row in rows)
        assert Instance.by_cuuid(session, cuuid).state == "terminated"


def test_no_host_of_that_hypervisor_is_no_matching_host_node(session, world):
    inst = scheduling_instance(session, world)
    inst.hypervisor = "esxi-nowhere"
    session.flush()
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert result["error_type"] == "NoMatchingHostNode"


def test_hosts_without_local_disk_are_passed_over(session, world):
    first, second = world.hosts
    session.execute(update(HostNode).where(HostNode.id == first.id)
                    .values(offering_disk_space_mb=5 * 1024, offering_memory_size=8192))
    inst = scheduling_instance(session, world)
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert result["host_node_id"] == second.canonical_uuid  # S11: disk counts in selection


def test_an_explicit_host_is_kept_and_claimed_once(session, world):
    inst = scheduling_instance(session, world, cpu=3)
    chosen = world.hosts[1]
    placement.assign_explicit_host(session, inst, chosen.canonical_uuid)
    result = handlers.schedule_instance(session, inst.canonical_uuid)
    assert result["host_node_id"] == chosen.canonical_uuid
    session.refresh(chosen)
    assert (chosen.used_cpu_cores, chosen.used_disk_bytes) == (3, 10 * GB)
    assert counters_true(session)


def test_explicit_host_checks(session, world):
    inst = scheduling_instance(session, world, cpu=3)
    with pytest.raises(UnknownHostNodeID):
        placement.assign_explicit_host(session, inst, "hn-zzzzzzzz")
    with pytest.raises(InvalidArgument):
        placement.assign_explicit_host(session, inst, "i-zzzzzzzz")
    offline = make.host_node(session, hypervisor=world.hv, online=False)
    with pytest.raises(InvalidHostNodeID):
        placement.assign_explicit_host(session, inst, offline.canonical_uuid)
    other = make.host_node(session, hypervisor=world.hv, arch="x86")
    with pytest.raises(IncompatibleHostNode):
        placement.assign_explicit_host(session, inst, other.canonical_uuid)
    small = make.host_node(session, hypervisor=world.hv, offering_cpu_cores=2)
    with pytest.raises(OutOfHostCapacity):
        placement.assign_explicit_host(session, inst, small.canonical_uuid)
    assert inst.host_node_id is None and counters_true(session)


def stopped(session, inst):
    """What stop leaves: hva cleared the host (claim released), the API released the IPs."""
    from collector.scheduling.teardown import release_ip_lease
    from collector.services import hva
    from collector.timeutil import utcnow

    for lease in session.scalars(select(NetworkVifIpLease).where(
            NetworkVifIpLease.network_vif_id.in_([v.id for v in inst.network_vifs]))):
        release_ip_lease(session, lease, utcnow())
    hva.update_instance(session, inst.canonical_uuid, {"host_node_id": None})
    inst.state = "scheduling"  # the API's start
    session.flush()


def test_start_places_again_and_leases_new_addresses(session, world):
    inst = scheduling_instance(session, world)
    handlers.schedule_instance(session, inst.canonical_uuid)
    stopped(session, inst)
    assert alive_addresses(session, inst) == [] and counters_true(session)
    result = handlers.schedule_start_instance(session, inst.canonical_uuid)
    assert result["outcome"] == "placed"
    session.refresh(inst)
    host = session.get(HostNode, inst.host_node_id)
    assert inst.state == "pending" and len(alive_addresses(session, inst)) == 1
    assert messages(session, result) == [(f"local-store-handle.{host.node_id}",
                                          "local-store-handle.run_local_store",
                                          [inst.canonical_uuid])]
    assert len(scheduled_events(session, inst.canonical_uuid)) == 2
    assert counters_true(session)


def test_a_san_start_runs_the_boot_volume_on_the_host(session, world):
    inst = scheduling_instance(session, world, local=False)
    handlers.schedule_instance(session, inst.canonical_uuid)
    stopped(session, inst)
    result = handlers.schedule_start_instance(session, inst.canonical_uuid)
    host = session.get(HostNode, inst.host_node_id)
    assert messages(session, result) == [(f"hva-handle.{host.node_id}",
                                          "hva-handle.run_vol_store",
                                          [inst.canonical_uuid, inst.boot_volume_id])]


def test_a_failed_start_goes_back_to_stopped_and_destroys_nothing(session, world):
    inst = scheduling_instance(session, world)
    handlers.schedule_instance(session, inst.canonical_uuid)
    stopped(session, inst)
    session.execute(update(NodeState).where(NodeState.node_id.in_(
        [h.node_id for h in world.hosts])).values(state="offline"))
    result = handlers.schedule_start_instance(session, inst.canonical_uuid)
    assert (result["outcome"], result["error_type"], result["state"]) == \
        ("failed", "NoMatchingHostNode", "stopped")
    session.refresh(inst)
    assert inst.state == "stopped" and inst.terminated_at is None  # S2: nothing destroyed
    assert inst.placement_error.startswith("NoMatchingHostNode")
    assert all(v.is_alive for v in inst.volumes) and all(v.is_alive for v in inst.network_vifs)
    assert alive_addresses(session, inst) == [] and counters_true(session)


def standalone_volume(session, size):
    vol = Volume(size=size, state="scheduling", account_id="a-shpoolxx")
    session.add(vol)
    session.flush()
    return vol


def test_a_volume_is_placed_and_created_on_its_node(session, world):
    vol = standalone_volume(session, 20 * GB)
    result = handlers.schedule_volume(session, vol.canonical_uuid)
    node = world.storage
    assert result["outcome"] == "placed" and result["storage_node_id"] == node.canonical_uuid
    assert messages(session, result) == [(f"sta-handle.{node.node_id}",
                                          "sta-handle.create_volume", [vol.canonical_uuid])]
    assert vol.state == "pending" and vol.volume_type == "iscsi"
    assert session.scalar(select(StorageAllocation.disk_bytes).where(
        StorageAllocation.volume_id == vol.id)) == 20 * GB
    assert handlers.schedule_volume(session, vol.canonical_uuid) == {
        "outcome": "noop", "volume_id": vol.canonical_uuid, "state": "pending"}  # S4


def test_a_volume_too_big_is_deleted_with_its_reason(session, world):
    vol = standalone_volume(session, 200 * GB)
    result = handlers.schedule_volume(session, vol.canonical_uuid)
    assert (result["outcome"], result["error_type"], result["state"]) == \
        ("failed", "InsufficientCapacity", "deleted")
    assert vol.deleted_at is not None and vol.placement_error.startswith("InsufficientCapacity")
    assert handlers.schedule_volume(session, vol.canonical_uuid)["outcome"] == "noop"


def test_no_storage_online_is_no_matching_storage_node(session, world):
    session.execute(update(NodeState).where(NodeState.node_id == world.storage.node_id)
                    .values(state="offline"))
    vol = standalone_volume(session, GB)
    assert handlers.schedule_volume(session, vol.canonical_uuid)["error_type"] == \
        "NoMatchingStorageNode"


def test_unknown_or_malformed_ids_raise_their_typed_errors(session):
    raises_each(session, [(UnknownInstanceID, handlers.schedule_instance, "i-zzzzzzzz"),
                          (UnknownInstanceID, handlers.schedule_start_instance, "i-zzzzzzzz"),
                          (UnknownVolumeID, handlers.schedule_volume, "vol-zzzzzzzz"),
                          (InvalidArgument, handlers.schedule_instance, "vol-zzzzzzzz")])


def test_the_configured_strategy_places(session, world, tmp_path):
    path = tmp_path / "specify.toml"
    path.write_text('[service_types.std]\nhost_node_scheduler = "SpecifyNode"\n'
                    'storage_node_scheduler = "LeastUsage"\n'
                    'network_scheduler = "VifsRequestParam"\n')
    target = world.hosts[1]
    try:
        config.reload_scheduler_config(str(path))
        inst = scheduling_instance(session, world, host_id=target.canonical_uuid)
        result = handlers.schedule_instance(session, inst.canonical_uuid)
        assert result["host_node_id"] == target.canonical_uuid
        other = scheduling_instance(session, world)
        assert handlers.schedule_instance(session, other.canonical_uuid)["error_type"] == \
            "NoMatchingHostNode"
        malformed = scheduling_instance(session, world, host_id="i-notahost")
        result = handlers.schedule_instance(session, malformed.canonical_uuid)
        assert (result["error_type"], result["state"]) == ("NoMatchingHostNode", "terminated")
    finally:
        config.reload_scheduler_config()


def test_the_openvnet_feature_also_asks_vnet_collector_to_schedule_the_vifs(session, world,
                                                                          tmp_path):
    path = tmp_path / "openvnet.toml"
    path.write_text("[features]\nopenvnet = true\n")
    try:
        config.reload_scheduler_config(str(path))
        inst = scheduling_instance(session, world)
        assert handlers.schedule_instance(session, inst.canonical_uuid)["outcome"] == "placed"
        sent = [(m.queue, m.name, m.payload["args"]) for m in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "task",
                                        OutboxMessage.queue == "vnet-collector"))]
        assert (("vnet-collector", "vnet-collector.schedule_vifs", [inst.canonical_uuid])
                in sent)
    finally:
        config.reload_scheduler_config()
    other = scheduling_instance(session, world)
    handlers.schedule_instance(session, other.canonical_uuid)
    assert not any(m.payload["args"] == [other.canonical_uuid] for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.queue == "vnet-collector")))
