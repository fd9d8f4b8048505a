"""schedule_instances: several placements in one transaction, each answering exactly what
schedule_instance answers (placed, failed and applied, noop), on SQLite and PostgreSQL; in
the same ``world`` as the single placement tests (``conftest.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from collector.errors import InvalidArgument, UnknownInstanceID
from collector.models import DhcpRange, HostAllocation, Instance, MacLease, NetworkVif, QueuedJob
from collector.scheduling import batch, handlers
from tests.support.scheduling import (
    alive_addresses,
    counters_true,
    messages,
    scheduled_events,
    scheduling_instance,
)


def _ids(instances):
    return [i.canonical_uuid for i in instances]


def test_a_batch_places_each_instance_as_schedule_instance_does(session, world):
    insts = [scheduling_instance(session, world, cpu=1) for _ in range(3)]
    results = batch.schedule_instances(session, _ids(insts))
    assert [r["outcome"] for r in results] == ["placed"] * 3
    assert [r["instance_id"] for r in results] == _ids(insts)
    macs, addresses = set(), set()
    for inst, result in zip(insts, results, strict=True):
        session.refresh(inst)
        assert (inst.state, inst.placement_error) == ("pending", None)
        host = next(h for h in world.hosts if h.canonical_uuid == result["host_node_id"])
        assert inst.host_node_id == host.id
        assert messages(session, result) == [(f"local-store-handle.{host.node_id}",
                                              "local-store-handle.run_local_store",
                                              [inst.canonical_uuid])]
        assert len(scheduled_events(session, inst.canonical_uuid)) == 1
        (vif,) = inst.network_vifs
        macs.add(vif.mac_addr)
        addresses.update(alive_addresses(session, inst))
    assert len(macs) == 3 and len(addresses) == 3
    assert counters_true(session)


def test_failures_noops_and_repeats_answer_as_their_own_jobs(session, world):
    placed, too_big, late = (scheduling_instance(session, world),
                             scheduling_instance(session, world, mem=8192),
                             scheduling_instance(session, world))
    late.state = "running"
    session.flush()
    ids = [placed.canonical_uuid, too_big.canonical_uuid, late.canonical_uuid,
           placed.canonical_uuid]
    results = batch.schedule_instances(session, ids)
    assert results[0]["outcome"] == "placed"
    assert (results[1]["outcome"], results[1]["error_type"], results[1]["state"]) == \
        ("failed", "InsufficientCapacity", "terminated")
    assert results[2] == {"outcome": "noop", "instance_id": late.canonical_uuid,
                          "state": "running"}
    assert results[3] == {"outcome": "noop", "instance_id": placed.canonical_uuid,
                          "state": "pending"}
    session.refresh(too_big)
    assert too_big.placement_error.startswith("InsufficientCapacity: ")
    assert session.scalar(select(HostAllocation.id).where(
        HostAllocation.instance_id == too_big.id)) is None
    assert scheduled_events(session, too_big.canonical_uuid) == []
    assert counters_true(session)


def test_addresses_running_out_in_the_last_phase_fail_only_that_instance(session, world):
    """The vif phase fails for the third instance: the batch is placed again one by one,
    so the first two keep their placements and the third is terminated holding nothing."""
    first = int(world.net.ipv4.network_address) + 10
    session.execute(delete(DhcpRange).where(DhcpRange.network_id == world.net.id))
    session.add(DhcpRange(network_id=world.net.id, range_begin=first, range_end=first + 1))
    session.flush()
    insts = [scheduling_instance(session, world) for _ in range(3)]
    macs_before = session.scalar(select(func.count()).select_from(MacLease))
    results = batch.schedule_instances(session, _ids(insts))
    assert [r["outcome"] for r in results] == ["placed", "placed", "failed"]
    assert results[2]["error_type"] == "OutOfIpRange"
    assert sorted(a for i in insts[:2] for a in alive_addresses(session, i)) == \
        [first, first + 1]
    last = insts[2]
    session.refresh(last)
    assert last.state == "terminated" and last.placement_error.startswith("OutOfIpRange: ")
    assert session.scalar(select(func.count()).select_from(NetworkVif).where(
        NetworkVif.instance_id == last.id, NetworkVif.deleted_at.is_(None))) == 0
    assert session.scalar(select(func.count()).select_from(MacLease)) == macs_before + 2
    assert session.scalar(select(HostAllocation.id).where(
        HostAllocation.instance_id == last.id)) is None
    assert session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == last.canonical_uuid)).all() == []
    assert counters_true(session)


def test_unknown_or_malformed_ids_write_nothing(session, world):
    inst = scheduling_instance(session, world)
    with pytest.raises(UnknownInstanceID):
        batch.schedule_instances(session, [inst.canonical_uuid, "i-zzzzzzzz"])
    with pytest.raises(InvalidArgument):
        batch.schedule_instances(session, inst.canonical_uuid)
    with pytest.raises(InvalidArgument):
        batch.schedule_instances(session, [inst.canonical_uuid] * (batch.MAX_BATCH + 1))
    session.refresh(inst)
    assert inst.state == "scheduling"
    assert session.scalar(select(func.count()).select_from(Instance).where(
        Instance.id == inst.id, Instance.host_node_id.is_not(None))) == 0
    assert handlers.schedule_instance(session, inst.canonical_uuid)["outcome"] == "placed"
