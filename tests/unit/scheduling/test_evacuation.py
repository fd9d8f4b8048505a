"""Evacuation on a real database: HA instances re-placed with their claims, non-HA running
ones halted, others untouched, per-instance savepoints, the host flag policy, dispatch
through the outbox, and the node-offline handler's once-per-outage rule."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from collector.errors import InvalidArgument, UnknownHostNodeID
from collector.models import (
    ISCSI,
    LOCAL,
    HostAllocation,
    HostNode,
    NodeState,
    OutboxMessage,
    QueuedJob,
)
from collector.scheduling import capacity, evacuation
from collector.scheduling import placement_config as config
from collector.scheduling.candidates import MB
from collector.services.api import hosts as api_hosts
from collector.services.jobs import ledger as ledger_service
from tests.support.checks import raises_each
from workers.demo.world import make

GB = 1024 * MB


@dataclass
class World:
    hv: str
    source: HostNode
    targets: list[HostNode]
    local_image: object
    san_image: object
    storage: object


@pytest.fixture()
def world(session):
    hv = f"kvm-{secrets.token_hex(3)}"

    def host(**kw):
        return make.host_node(session, hypervisor=hv, **{
            "offering_cpu_cores": 4, "offering_memory_size": 4096,
            "offering_disk_space_mb": 50 * 1024, **kw})

    return World(hv, host(offering_cpu_cores=16, offering_memory_size=16384),
                 [host(), host()], make.image(session, local=True),
                 make.image(session, local=False),
                 make.storage_node(session))


@pytest.fixture()
def use_config(tmp_path):
    def load(text):
        path = tmp_path / "scheduler.toml"
        path.write_text(text)
        config.reload_scheduler_config(str(path))

    yield load
    config.reload_scheduler_config()


def on_source(session, w, ha=True, san=False, state="running", cpu=1, mem=1024):
    inst = make.instance(session, w.source, img=w.san_image if san else w.local_image,
                                hypervisor=w.hv, ha_enabled=int(ha), state=state,
                                cpu_cores=cpu, memory_size=mem)
    if san:
        make.volume(session, inst, ISCSI, node=w.storage, boot=True)
    else:
        make.volume(session, inst, LOCAL, boot=True, size=10 * GB)
    return inst


def offline(session, host):
    session.execute(update(NodeState).where(NodeState.node_id == host.node_id)
                    .values(state="offline"))


def ledger(session, inst):
    return list(session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == inst.canonical_uuid).order_by(QueuedJob.id)))


def jobs(session, inst):
    return [(j.queue_name, j.job_name, j.params["args"]) for j in ledger(session, inst)]


def sent(session, inst):
    """The ledger's jobs for ``inst`` whose message is in the outbox (held ones are not)."""
    ids_ = {j.task_id for j in ledger(session, inst)}
    return {m.task_id for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.task_id.in_(ids_)))}


def events(session, inst):
    return [m for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "event", OutboxMessage.routing_key.like("instance.scheduled.%")))
        if m.payload["args"][1] == [inst.canonical_uuid]]


def claim_of(session, inst):
    return session.execute(select(HostAllocation.host_node_id, HostAllocation.disk_bytes)
                           .where(HostAllocation.instance_id == inst.id)).one()


def test_ha_instances_move_non_ha_running_halt_the_rest_is_left_alone(session, world):
    w = world
    offline(session, w.source)
    ha_local, ha_san = on_source(session, w), on_source(session, w, san=True)
    plain = on_source(session, w, ha=False)
    stopping = on_source(session, w, ha=False, state="stopping")
    placing = on_source(session, w, state="scheduling")
    result = evacuation.evacuate_from(session, w.source.canonical_uuid)
    assert result == {"scheduled": [ha_local.canonical_uuid, ha_san.canonical_uuid],
                      "failed": [], "halted": [plain.canonical_uuid]}
    session.expire_all()
    first, second = w.targets
    assert (ha_local.state, ha_local.host_node_id) == ("pending", first.id)
    assert (ha_san.state, ha_san.host_node_id) == ("pending", second.id)  # most free memory
    assert ha_local.volumes[0].state == "pending"  # made again on the new host
    assert ha_san.volumes[0].state == "available"  # attached again by the boot
    assert claim_of(session, ha_local) == (first.id, 10 * GB)  # disk counted once (S14)
    assert (plain.state, plain.host_node_id) == ("halted", w.source.id)
    assert (stopping.state, placing.state) == ("stopping", "scheduling")  # their own flows
    cleanup = (f"hva-handle.{w.source.node_id}", "cleanup")
    assert jobs(session, ha_local) == [(*cleanup, [ha_local.canonical_uuid]),
                                       (f"local-store-handle.{first.node_id}",
                                        "run_local_store", [ha_local.canonical_uuid])]
    assert jobs(session, ha_san) == [(*cleanup, [ha_san.canonical_uuid]),
                                     (f"hva-handle.{second.node_id}", "run_vol_store",
                                      [ha_san.canonical_uuid, ha_san.boot_volume_id])]
    # The silent source's cleanups wait for it to come back; the local boot goes now, the
    # SAN boot waits for the cleanup or the fence timeout.
    local_cleanup, local_boot = ledger(session, ha_local)
    san_cleanup, san_boot = ledger(session, ha_san)
    assert [j.state for j in (local_cleanup, local_boot, san_cleanup, san_boot)] == [
        "held", "pending", "held", "held"]
    assert sent(session, ha_local) == {local_boot.task_id} and sent(session, ha_san) == set()
    assert san_boot.after_job_id == san_cleanup.id and san_boot.held_until is not None
    assert (local_cleanup.generation, local_boot.generation) == (1, 2)
    assert (ha_local.placement_generation, plain.placement_generation) == (2, 1)
    assert jobs(session, plain) == []
    assert len(events(session, ha_local)) == len(events(session, ha_san)) == 1
    # An operator's evacuation: the flag restored, no outage marked handled.
    assert w.source.scheduling_enabled and w.source.evacuated_at is None
    assert capacity.reconcile(session) == []


def test_an_online_source_gets_cleanup_first_and_the_boot_waits_for_it(session, world):
    inst = on_source(session, world)
    evacuation.evacuate_from(session, world.source.canonical_uuid)
    target = session.get(HostNode, inst.host_node_id)
    assert jobs(session, inst) == [
        (f"hva-handle.{world.source.node_id}", "cleanup", [inst.canonical_uuid]),
        (f"local-store-handle.{target.node_id}", "run_local_store", [inst.canonical_uuid])]
    cleanup, boot = ledger(session, inst)
    assert (cleanup.state, boot.state, boot.after_job_id) == ("pending", "held", cleanup.id)
    assert sent(session, inst) == {cleanup.task_id}  # the boot is sent once the cleanup ends
    ledger_service.finish_success(session, cleanup.canonical_uuid)
    session.flush()
    session.refresh(boot)
    assert boot.state == "pending" and sent(session, inst) == {cleanup.task_id, boot.task_id}


def test_the_host_flag_is_restored_unless_kept_offline(session, world):
    source = world.source.canonical_uuid
    evacuation.evacuate_from(session, source, keep_offline=True)
    assert world.source.scheduling_enabled is False
    evacuation.evacuate_from(session, source)
    assert world.source.scheduling_enabled is False  # restored to what it was: disabled
    world.source.scheduling_enabled = True
    evacuation.evacuate_from(session, source, keep_offline=False)
    assert world.source.scheduling_enabled is True


@pytest.mark.parametrize("source_online", [False, True], ids=["source-offline",
                                                               "source-online"])
def test_a_failed_re_placement_rolls_back_that_instance_only(session, world, source_online):
    if not source_online:
        offline(session, world.source)
    fits = on_source(session, world, cpu=4, mem=4096)
    other = on_source(session, world, cpu=4, mem=4096)
    too_big = on_source(session, world, cpu=8, mem=1024)
    result = evacuation.evacuate_from(session, world.source.canonical_uuid)
    assert result["scheduled"] == [fits.canonical_uuid, other.canonical_uuid]
    assert result["failed"] == [too_big.canonical_uuid]
    session.expire_all()
    assert too_big.host_node_id == world.source.id
    assert claim_of(session, too_big)[0] == world.source.id  # its claim rolled back too
    assert too_big.state == ("running" if source_online else "halted")
    assert too_big.placement_error.startswith("InsufficientCapacity: ")
    assert too_big.volumes[0].state == "attached" and jobs(session, too_big) == []
    assert capacity.reconcile(session) == []


def test_over_commit_only_when_the_ha_strategy_allows_it(session, world, use_config):
    for target in world.targets:
        make.instance(session, target, hypervisor=world.hv, cpu_cores=4)
    inst = on_source(session, world, cpu=2)
    assert evacuation.evacuate_from(session, world.source.canonical_uuid)["failed"] == \
        [inst.canonical_uuid]
    use_config('[service_types.std]\nhost_node_scheduler = "LeastUsage"\n'
               'host_node_ha_scheduler = { strategy = "LeastUsage", allow_over_commit = true }\n'
               'storage_node_scheduler = "LeastUsage"\nnetwork_scheduler = "VifsRequestParam"\n')
    assert evacuation.evacuate_from(session, world.source.canonical_uuid)["scheduled"] == \
        [inst.canonical_uuid]
    target = session.get(HostNode, inst.host_node_id)
    session.refresh(target)
    assert target.used_cpu_cores == 6 > target.offering_cpu_cores
    assert capacity.reconcile(session) == []


def test_the_configured_ha_strategy_places(session, world, use_config):
    use_config('[service_types.std]\nhost_node_scheduler = "LeastUsage"\n'
               'host_node_ha_scheduler = "ExcludeSame"\n'
               'storage_node_scheduler = "LeastUsage"\nnetwork_scheduler = "VifsRequestParam"\n')
    make.instance(session, world.targets[0], hypervisor=world.hv, cpu_cores=3)
    inst = on_source(session, world)
    evacuation.evacuate_from(session, world.source.canonical_uuid)
    assert inst.host_node_id == world.targets[0].id  # by id, not by free memory


def test_a_halted_ha_instance_moves_without_a_boot(session, world):
    inst = on_source(session, world, state="halted")
    result = evacuation.evacuate_from(session, world.source.canonical_uuid)
    assert result["scheduled"] == [inst.canonical_uuid]
    assert inst.state == "halted" and inst.host_node_id != world.source.id
    assert [j[1] for j in jobs(session, inst)] == ["cleanup"]


def test_a_repeat_touches_nothing_already_moved(session, world):
    offline(session, world.source)
    ha, plain = on_source(session, world), on_source(session, world, ha=False)
    evacuation.evacuate_from(session, world.source.canonical_uuid)
    before = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
    again = evacuation.evacuate_from(session, world.source.canonical_uuid)
    assert again == {"scheduled": [], "failed": [], "halted": []}
    assert session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())
                          .limit(1)) == before
    assert (ha.state, plain.state) == ("pending", "halted")


def test_unknown_or_malformed_hosts_are_typed_and_write_nothing(session):
    raises_each(session, [(UnknownHostNodeID, evacuation.evacuate_from, "hn-zzzzzzzz"),
                          (InvalidArgument, evacuation.evacuate_from, "i-zzzzzzzz"),
                          (UnknownHostNodeID, api_hosts.evacuate_host, "hn-zzzzzzzz")])


def test_the_api_evacuates_and_restores_the_flag(session, world):
    inst = on_source(session, world)
    assert api_hosts.evacuate_host(session, world.source.canonical_uuid)["scheduled"] == \
        [inst.canonical_uuid]
    assert world.source.scheduling_enabled is True


# --- node_collector/offline -------------------------------------------------------------------

def test_the_offline_event_does_nothing_unless_configured(session, world):
    offline(session, world.source)
    inst = on_source(session, world)
    answer = evacuation.on_node_offline(session, [world.source.node_id], "collector.master")
    assert answer["skipped"] == "evacuate_on_node_offline is off"
    assert inst.host_node_id == world.source.id


def test_the_offline_event_evacuates_a_host_once_per_outage(session, world, use_config):
    use_config("evacuate_on_node_offline = true\n")
    node_id = world.source.node_id
    inst = on_source(session, world)
    back = evacuation.on_node_offline(session, [node_id], "collector.master")
    assert back == {"node_id": node_id, "skipped": "node is online"}  # a stale event
    offline(session, world.source)
    first = evacuation.on_node_offline(session, [node_id], "collector.master")
    assert first["scheduled"] == [inst.canonical_uuid]
    assert first["host_node_id"] == world.source.canonical_uuid
    session.refresh(world.source)
    assert world.source.scheduling_enabled is False  # kept offline
    assert api_hosts.set_host_scheduling(session, world.source.canonical_uuid, True) == {
        "id": world.source.canonical_uuid, "node_id": node_id, "scheduling_enabled": True}
    api_hosts.set_host_scheduling(session, world.source.canonical_uuid, False)
    assert world.source.scheduling_enabled is False  # until an operator takes it back
    later = on_source(session, world)  # say, placed by an operator meanwhile
    repeat = evacuation.on_node_offline(session, [node_id], "collector.master")
    assert repeat["skipped"] == "this outage was already evacuated"
    assert later.host_node_id == world.source.id
    # The node comes back (a newer heartbeat) and fails again: a new outage.
    session.execute(update(NodeState).where(NodeState.node_id == node_id).values(
        last_ping_at=world.source.evacuated_at + timedelta(seconds=30)))
    assert evacuation.on_node_offline(session, [node_id], "x")["scheduled"] == \
        [later.canonical_uuid]


def test_the_offline_event_of_other_nodes_is_ignored(session, use_config):
    use_config("evacuate_on_node_offline = true\n")
    assert evacuation.on_node_offline(session, ["sta.nothere"], "x")["skipped"] == \
        "not a host node"
    for bad in ([], [42], [None]):
        with pytest.raises(InvalidArgument):
            evacuation.on_node_offline(session, bad, "x")
