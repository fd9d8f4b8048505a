"""Live migration on a real database (SQLite and PostgreSQL): the API's refusals, the
destination's claim beside the source's, a reported switch (claims, counters, generation,
cleanup of the source) and a failed migration (the instance runs on, the claim freed)."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from collector import errors
from collector.models import (
    LOCAL,
    HostAllocation,
    HostNode,
    MigrationAllocation,
    NodeState,
    QueuedJob,
)
from collector.scheduling import capacity
from collector.scheduling.candidates import MB
from collector.services import host_nodes
from collector.services.api import instances as api
from collector.services.jobs import ledger
from workers.demo.world import make

GB = 1024 * MB


@pytest.fixture()
def world(session) -> SimpleNamespace:
    """Hosts of a hypervisor of this test's own: the source, ``small`` (room for one 1-core
    instance) and ``big``."""
    hv = f"kvm-{secrets.token_hex(3)}"
    source, small, big = (make.host_node(session, hypervisor=hv, offering_cpu_cores=cores,
                                         offering_memory_size=cores * 1024,
                                         offering_disk_space_mb=50 * 1024)
                          for cores in (8, 1, 8))
    return SimpleNamespace(hv=hv, source=source, small=small, big=big,
                           image=make.image(session, local=True))


def running(session, w: SimpleNamespace, cpu: int = 1, mem: int = 1024, state: str = "running"):
    inst = make.instance(session, w.source, img=w.image, hypervisor=w.hv, state=state,
                         cpu_cores=cpu, memory_size=mem)
    make.volume(session, inst, LOCAL, boot=True, size=10 * GB)
    return inst


def claims(session, inst) -> tuple[tuple, tuple]:
    host = session.execute(select(HostAllocation.host_node_id, HostAllocation.disk_bytes)
                           .where(HostAllocation.instance_id == inst.id)).all()
    moving = session.execute(select(MigrationAllocation.host_node_id,
                                    MigrationAllocation.disk_bytes, MigrationAllocation.job_id)
                             .where(MigrationAllocation.instance_id == inst.id)).all()
    return tuple(map(tuple, host)), tuple(map(tuple, moving))


def jobs(session, inst) -> list[tuple]:
    return [(j.queue_name, j.job_name, j.params["args"], j.state, j.generation)
            for j in session.scalars(select(QueuedJob).where(
                QueuedJob.resource_id == inst.canonical_uuid).order_by(QueuedJob.id))]


def used(session, host: HostNode) -> tuple[int, int, int]:
    session.refresh(host)
    return host.used_cpu_cores, host.used_memory_size, host.used_disk_bytes


def test_migration_claims_the_destination_beside_the_source(session, world):
    w = world
    inst = running(session, w)
    doc = api.migrate_instance(session, inst.canonical_uuid)
    assert doc["state"] == "migrating"
    [job] = jobs(session, inst)
    # never the source; the strategy's best other host (most free memory): big
    assert job == (f"migration-handle.{w.big.node_id}", "run_migration",
                   [inst.canonical_uuid, 1], "pending", 1)
    job_id = session.scalar(select(QueuedJob.task_id).where(
        QueuedJob.resource_id == inst.canonical_uuid))
    assert claims(session, inst) == (((w.source.id, 10 * GB),), ((w.big.id, 10 * GB, job_id),))
    assert used(session, w.source) == (1, 1024, 10 * GB) == used(session, w.big)
    assert inst.host_node_id == w.source.id  # it runs on the source until the switch
    assert capacity.reconcile(session) == []


def test_switch_moves_the_instance_fences_the_source_and_frees_its_claim(session, world):
    w = world
    inst = running(session, w)
    api.migrate_instance(session, inst.canonical_uuid, w.small.canonical_uuid)
    with pytest.raises(errors.PlacementGenerationRequired):
        host_nodes.switch_instance_host_node(session, inst.canonical_uuid, w.small.node_id)
    with pytest.raises(errors.StalePlacement):
        host_nodes.switch_instance_host_node(session, inst.canonical_uuid, w.small.node_id, 2)
    with pytest.raises(errors.StalePlacement):  # not the migration's destination
        host_nodes.switch_instance_host_node(session, inst.canonical_uuid, w.big.node_id, 1)
    assert host_nodes.switch_instance_host_node(session, inst.canonical_uuid,
                                                w.small.node_id, 1) is True
    session.refresh(inst)
    assert (inst.state, inst.host_node_id, inst.placement_generation) == \
        ("running", w.small.id, 2)
    assert claims(session, inst) == (((w.small.id, 10 * GB),), ())
    assert used(session, w.source) == (0, 0, 0)
    assert used(session, w.small) == (1, 1024, 10 * GB)
    assert capacity.reconcile(session) == []
    assert jobs(session, inst)[1:] == [(f"hva-handle.{w.source.node_id}", "cleanup",
                                        [inst.canonical_uuid], "pending", 1)]
    # the migration job finishing afterwards changes nothing
    ledger.finish_success(session, session.scalar(select(QueuedJob.task_id).where(
        QueuedJob.job_name == "run_migration", QueuedJob.resource_id == inst.canonical_uuid)))
    session.refresh(inst)
    assert (inst.state, inst.host_node_id) == ("running", w.small.id)
    with pytest.raises(errors.StalePlacement):  # a repeated switch of the old generation
        host_nodes.switch_instance_host_node(session, inst.canonical_uuid, w.small.node_id, 1)


@pytest.mark.parametrize("how", ["finish_fail", "cancel", "success_without_switch"])
def test_failed_migration_runs_on_at_the_source_and_frees_the_destination(session, world, how):
    w = world
    inst = running(session, w)
    api.migrate_instance(session, inst.canonical_uuid)
    job_id = session.scalar(select(QueuedJob.task_id).where(
        QueuedJob.resource_id == inst.canonical_uuid))
    {"finish_fail": lambda: ledger.finish_fail(session, job_id, {"message": "boom"}),
     "cancel": lambda: ledger.cancel(session, job_id),
     "success_without_switch": lambda: ledger.finish_success(session, job_id)}[how]()
    session.refresh(inst)
    assert (inst.state, inst.host_node_id, inst.placement_generation) == \
        ("running", w.source.id, 1)
    assert claims(session, inst) == (((w.source.id, 10 * GB),), ())
    assert used(session, w.big) == (0, 0, 0)
    assert capacity.reconcile(session) == []
    with pytest.raises(errors.StalePlacement):  # a copy that boots late is told to drop itself
        host_nodes.switch_instance_host_node(session, inst.canonical_uuid, w.big.node_id, 1)
    api.migrate_instance(session, inst.canonical_uuid)  # and it may be migrated again
    session.refresh(inst)
    assert inst.state == "migrating"


def test_migrate_refusals_write_nothing(session, world):
    w = world
    inst = running(session, w, cpu=2, mem=2048)
    stopped = running(session, w, state="stopped")
    other_hv = make.host_node(session, hypervisor=f"xen-{secrets.token_hex(3)}")
    cases = [
        (stopped.canonical_uuid, None, errors.InvalidInstanceState),
        (inst.canonical_uuid, w.source.canonical_uuid, errors.InvalidMigrationTarget),
        (inst.canonical_uuid, w.small.canonical_uuid, errors.OutOfHostCapacity),
        (inst.canonical_uuid, other_hv.canonical_uuid, errors.IncompatibleHostNode),
    ]
    for instance_id, dest, error in cases:
        with pytest.raises(error):
            api.migrate_instance(session, instance_id, dest)
    w.big.scheduling_enabled = False
    session.flush()
    with pytest.raises(errors.InvalidMigrationTarget):
        api.migrate_instance(session, inst.canonical_uuid, w.big.canonical_uuid)
    with pytest.raises(errors.InsufficientCapacity):  # small too small, big disabled: none takes it
        api.migrate_instance(session, inst.canonical_uuid)
    w.big.scheduling_enabled = True
    session.execute(update(NodeState).where(NodeState.node_id == w.big.node_id)
                    .values(state="offline"))
    with pytest.raises(errors.InvalidHostNodeID):
        api.migrate_instance(session, inst.canonical_uuid, w.big.canonical_uuid)
    session.refresh(inst)
    assert inst.state == "running" and jobs(session, inst) == []
    assert claims(session, inst)[1] == ()
    assert capacity.reconcile(session) == []


def test_terminated_while_migrating_frees_both_claims(session, world):
    w = world
    inst = running(session, w)
    api.migrate_instance(session, inst.canonical_uuid)
    from collector.services import hva
    hva.update_instance(session, inst.canonical_uuid, {"state": "shuttingdown"})
    hva.update_instance(session, inst.canonical_uuid, {"state": "terminated"})
    assert claims(session, inst) == ((), ())
    assert used(session, w.big) == (0, 0, 0) == used(session, w.source)
    assert capacity.reconcile(session) == []
