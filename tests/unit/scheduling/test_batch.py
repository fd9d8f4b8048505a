"""schedule_instances: several placements in one transaction, each answering exactly what
schedule_instance answers (placed, failed and applied, noop), on SQLite and PostgreSQL; in
the same ``world`` as the single placement tests (``conftest.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, event, func, select, update

from collector.errors import InvalidArgument, UnknownInstanceID
from collector.models import (
    DhcpRange,
    HostAllocation,
    Instance,
    IpLease,
    MacLease,
    Network,
    NetworkVif,
    QueuedJob,
)
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


def _network_guards(session, world) -> list[int]:
    return sorted(session.scalars(select(IpLease.ipv4).where(
        IpLease.network_id == world.net.id)))


def _addresses_placed(session, insts) -> list[list[int]]:
    """Place ``insts`` in one batch, each of them placed: the addresses each holds."""
    results = batch.schedule_instances(session, _ids(insts))
    assert [r["outcome"] for r in results] == ["placed"] * len(insts)
    for inst in insts:
        session.refresh(inst)
    return [alive_addresses(session, i) for i in insts]


def _at_cursor(session, world, cursor: int) -> None:
    session.execute(update(Network).where(Network.id == world.net.id).values(ip_cursor=cursor))
    session.flush()
    session.expire(world.net)


def test_a_batch_takes_the_addresses_one_placement_after_another_would(session, world):
    """The batch reserves its addresses ahead (one statement for many): it still skips an
    address already taken, leaves the cursor at its last address and keeps no guard row it
    did not use, as placing the instances one by one would have."""
    cursor = int(world.net.ipv4.network_address) + 20
    _at_cursor(session, world, cursor)
    session.add(IpLease(network_id=world.net.id, ipv4=cursor + 2, description="manual"))
    session.flush()
    macs_before = set(session.scalars(select(MacLease.mac_addr)))
    insts = [scheduling_instance(session, world) for _ in range(5)]
    assert _addresses_placed(session, insts) == \
        [[cursor + 1], [cursor + 3], [cursor + 4], [cursor + 5], [cursor + 6]]
    assert _network_guards(session, world) == [cursor + k for k in range(1, 7)]
    session.refresh(world.net)
    assert world.net.ip_cursor == cursor + 6
    new_macs = sorted(set(session.scalars(select(MacLease.mac_addr))) - macs_before)
    assert new_macs == sorted(int(i.network_vifs[0].mac_addr, 16) for i in insts)
    assert new_macs == list(range(new_macs[0], new_macs[0] + 5))
    assert counters_true(session)


def test_a_crowded_network_is_searched_by_the_database_instead(session, world):
    """The addresses after the cursor are nearly all taken: the reservation finds too few
    free and the batch searches as one placement does, holes first."""
    cursor = int(world.net.ipv4.network_address) + 20
    _at_cursor(session, world, cursor)
    holes = {cursor + 5, cursor + 30}
    session.add_all(IpLease(network_id=world.net.id, ipv4=cursor + k, description="taken")
                    for k in range(1, 41) if cursor + k not in holes)
    session.flush()
    insts = [scheduling_instance(session, world) for _ in range(3)]
    assert _addresses_placed(session, insts) == [[cursor + 5], [cursor + 30], [cursor + 41]]
    assert _network_guards(session, world) == [cursor + k for k in range(1, 42)]
    session.refresh(world.net)
    assert world.net.ip_cursor == cursor + 41


def test_a_batch_leases_its_addresses_in_a_few_statements(session, world):
    """Six placements: one guarded insert for the first MAC (it locks and reads the
    ranges), then one for the other five; one for all six IP addresses."""
    insts = [scheduling_instance(session, world) for _ in range(6)]
    inserts: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO"):
            inserts.append(statement.split()[2].strip('"'))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        results = batch.schedule_instances(session, _ids(insts))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [r["outcome"] for r in results] == ["placed"] * 6
    assert (inserts.count("ip_leases"), inserts.count("mac_leases")) == (1, 2)
    assert len({a for i in insts for a in alive_addresses(session, i)}) == 6


def test_addresses_reserved_and_not_used_are_given_back(session, world):
    """Two of four instances have no vif: the batch reserved for four, so two guard rows
    and two MAC leases are left over; they are deleted before the commit, and the cursor
    stays at the last address handed out."""
    cursor = int(world.net.ipv4.network_address) + 20
    _at_cursor(session, world, cursor)
    macs_before = session.scalar(select(func.count()).select_from(MacLease))
    insts = [scheduling_instance(session, world, vifs=vifs)
             for vifs in (None, None, {}, {})]
    assert _addresses_placed(session, insts) == [[cursor + 1], [cursor + 2], [], []]
    assert _network_guards(session, world) == [cursor + 1, cursor + 2]
    session.refresh(world.net)
    assert world.net.ip_cursor == cursor + 2
    assert session.scalar(select(func.count()).select_from(MacLease)) == macs_before + 2
