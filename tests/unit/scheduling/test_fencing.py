"""Fencing a host its instances moved off: every placement has a generation, reports of an
earlier one are refused, the old host's jobs are cancelled in the re-placement's
transaction, its cleanup waits for it to come back, and a SAN boot on the new host waits
for that cleanup or the fence timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from collector.db import db_now, job_states, outbox
from collector.errors import PlacementGenerationRequired, StalePlacement
from collector.models import ISCSI, LOCAL, Instance, NodeState, OutboxMessage, QueuedJob
from collector.scheduling import evacuation, handlers
from collector.services import hva, node_states
from collector.services.jobs import ledger
from workers.demo.world import make


def _offline(session, host):
    session.execute(update(NodeState).where(NodeState.node_id == host.node_id)
                    .values(state="offline"))


def _running_on(session, world, san=False):
    source = world.hosts[0]
    inst = make.instance(session, source, img=world.san_image if san else world.local_image,
                         hypervisor=world.hv, ha_enabled=1, state="running")
    if san:
        make.volume(session, inst, ISCSI, node=world.storage, boot=True)
    else:
        make.volume(session, inst, LOCAL, boot=True)
    return source, inst


def _jobs(session, inst):
    return list(session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == inst.canonical_uuid).order_by(QueuedJob.id)))


def _sent(session, job):
    return session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.task_id == job.task_id, OutboxMessage.kind == "job")) is not None


def test_a_report_of_an_earlier_placement_is_refused_and_changes_nothing(session, world):
    _source, inst = _running_on(session, world)
    inst.placement_generation = 3
    session.flush()
    cuuid = inst.canonical_uuid
    with pytest.raises(StalePlacement):
        hva.update_instance(session, cuuid, {"state": "stopping", "generation": 2})
    with pytest.raises(PlacementGenerationRequired):  # a plain agent that ignores it
        hva.update_instance(session, cuuid, {"state": "stopping"})
    with pytest.raises(PlacementGenerationRequired):
        hva.update_instance(session, cuuid, {"host_node_id": None})
    session.expire_all()
    assert (inst.state, inst.host_node_id) == ("running", world.hosts[0].id)
    hva.update_instance(session, cuuid, {"status": "online"})  # not fenced: no state or host
    hva.update_instance(session, cuuid, {"state": "stopping", "generation": 3})
    session.expire_all()
    assert inst.state == "stopping"


def test_an_instance_placed_once_takes_reports_without_a_generation(session, world):
    _source, inst = _running_on(session, world)
    hva.update_instance(session, inst.canonical_uuid, {"state": "stopping"})
    session.expire_all()
    assert inst.state == "stopping" and inst.placement_generation == 1


def test_evacuation_cancels_the_old_hosts_jobs_for_the_instance_in_its_transaction(session,
                                                                                  world):
    source, inst = _running_on(session, world)
    cuuid = inst.canonical_uuid
    queued_stop = outbox.jobs.submit(session, f"hva-handle.{source.node_id}", "stop", cuuid,
                                     resource_id=cuuid, generation=1)
    other = make.instance(session, source, hypervisor=world.hv)
    unrelated = outbox.jobs.submit(session, f"hva-handle.{source.node_id}", "stop",
                                   other.canonical_uuid, resource_id=other.canonical_uuid)
    _offline(session, source)
    evacuation.evacuate_from(session, source.canonical_uuid, keep_offline=True)
    session.expire_all()
    by_id = {j.canonical_uuid: j for j in session.scalars(select(QueuedJob))}
    assert (by_id[queued_stop].state, by_id[queued_stop].finish_status) == ("finished",
                                                                            "cancel")
    assert by_id[unrelated].state == "pending"  # another instance's job: untouched
    revokes = [m.payload["args"][0] for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "control"))]
    assert by_id[queued_stop].task_id in revokes
    assert inst.placement_generation == 2 and inst.host_node_id == world.hosts[1].id


def test_the_cleanup_waits_for_the_old_node_and_goes_when_it_comes_back(session, world):
    source, inst = _running_on(session, world)
    _offline(session, source)
    evacuation.evacuate_from(session, source.canonical_uuid, keep_offline=True)
    cleanup, boot = _jobs(session, inst)
    assert (cleanup.job_name, cleanup.state, cleanup.generation) == ("cleanup", "held", 1)
    assert not _sent(session, cleanup)
    assert boot.state == "pending" and _sent(session, boot)  # a local disk: no wait
    node = session.scalars(select(NodeState).where(NodeState.node_id == source.node_id)).one()
    node_states.notify(session, source.node_id, node.boot_token)  # the node is back
    session.flush()
    session.refresh(cleanup)
    assert cleanup.state == "pending" and _sent(session, cleanup)


def test_a_san_boot_waits_for_the_cleanup_or_the_fence_timeout(session, world):
    source, inst = _running_on(session, world, san=True)
    _offline(session, source)
    evacuation.evacuate_from(session, source.canonical_uuid, keep_offline=True)
    cleanup, boot = _jobs(session, inst)
    assert (boot.job_name, boot.state, boot.after_job_id) == ("run_vol_store", "held",
                                                              cleanup.id)
    assert job_states.release_due(session) == []  # not yet
    session.execute(update(QueuedJob).where(QueuedJob.id == boot.id)
                    .values(held_until=db_now(session) - timedelta(seconds=1)))
    assert job_states.release_due(session) == [boot.canonical_uuid]
    session.flush()
    session.refresh(boot)
    assert boot.state == "pending" and _sent(session, boot)
    assert cleanup.state == "held"  # still waits for its node


def test_a_boot_waiting_for_a_cleanup_goes_when_the_cleanup_fails_too(session, world):
    source, inst = _running_on(session, world, san=True)
    evacuation.evacuate_from(session, source.canonical_uuid)  # online: cleanup sent now
    cleanup, boot = _jobs(session, inst)
    assert cleanup.state == "pending" and boot.state == "held"
    ledger.finish_fail(session, cleanup.canonical_uuid, "no such instance here")
    session.flush()
    session.refresh(boot)
    assert boot.state == "pending" and _sent(session, boot)


def test_a_start_is_a_new_placement_and_its_boot_carries_the_generation(session, world):
    inst = make.instance(session, None, img=world.local_image, hypervisor=world.hv,
                         state="scheduling", status="offline")
    make.volume(session, inst, LOCAL, boot=True)
    session.flush()
    before = inst.placement_generation
    result = handlers.schedule_start_instance(session, inst.canonical_uuid)
    assert result["outcome"] == "placed"
    session.expire_all()
    [boot] = [j for j in _jobs(session, inst) if j.job_name == "run_local_store"]
    assert inst.placement_generation == boot.generation == before + 1
    assert session.get(Instance, inst.id).state == "pending"
