"""A stop gives the instance's addresses back when its agent confirms it, not when it is asked.

``api.stop_instance`` leaves the instance ``running`` until its agent reports ``stopping``
then ``stopped`` (off its host). Until then its IP leases stay: new placements leasing in
its network until the cursor wraps never get its address; after the ``stopped`` report the
address is free again; a stop that fails (the ledger's job ``finished/fail``, the instance
still running) keeps them. SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector import wire
from collector.db import unit_of_work
from collector.errors import OutOfIpRange
from collector.models import Instance, IpLease, Network, NetworkVifIpLease, QueuedJob
from collector.models.networks import ipv4_to_s
from collector.scheduling import placement
from collector.services import hva
from collector.services.api import instances
from collector.services.jobs import ledger
from workers.demo.world import make

pytestmark = pytest.mark.integration

# A /28: dynamic addresses .10 to .14, five in all.
CIDR = "10.77.0.0/28"


def _running_with_an_address(url: str) -> tuple[str, str, str]:
    """A running instance whose vif leased the network's first dynamic address (the cursor
    is on it); returns the instance id, the network id and the address."""
    with unit_of_work(url) as session:
        host = make.host_node(session)
        net = make.network(session, CIDR)
        inst = make.instance(session, host, state="running")
        vif = make.vif(session, inst, net)
        lease = placement.lease_ip(session, net, vif)
        return inst.canonical_uuid, net.canonical_uuid, ipv4_to_s(lease.ipv4)


def _lease_until_full(url: str, network_id: str) -> list[str]:
    """New placements' addresses, one transaction each, until the network has none left
    (the cursor wraps past the end of the range on the way)."""
    leased = []
    for _ in range(10):
        try:
            with unit_of_work(url) as session:
                net = Network.by_cuuid(session, network_id)
                leased.append(ipv4_to_s(placement.lease_ip(session, net).ipv4))
        except OutOfIpRange:
            return leased
    raise AssertionError(f"a /28 gave more than 5 addresses: {leased}")


def _leases_of(url: str, instance_id: str) -> list[tuple[str, bool, bool]]:
    """The instance's leases: (address, alive, its guard row held)."""
    with unit_of_work(url, readonly=True) as session:
        inst = Instance.by_cuuid(session, instance_id)
        out = []
        for vif in inst.network_vifs:
            for lease in session.scalars(select(NetworkVifIpLease).where(
                    NetworkVifIpLease.network_vif_id == vif.id)):
                guarded = session.scalar(select(IpLease.id).where(
                    IpLease.network_id == lease.network_id, IpLease.ipv4 == lease.ipv4))
                out.append((ipv4_to_s(lease.ipv4), lease.deleted_at is None,
                            guarded is not None))
        return out


def _stop_requested(url: str, instance_id: str) -> str:
    """``api.stop_instance``; returns the stop job's id."""
    with unit_of_work(url) as session:
        assert instances.stop_instance(session, instance_id)["state"] == "running"
        return session.scalars(select(QueuedJob).where(
            QueuedJob.resource_id == instance_id,
            QueuedJob.job_name == wire.HvaJob.STOP)).one().canonical_uuid


def test_a_requested_stop_keeps_the_address_until_the_agent_reports_stopped(db_url):
    inst, net, address = _running_with_an_address(db_url)
    _stop_requested(db_url, inst)
    with unit_of_work(db_url) as session:
        hva.update_instance(session, inst, {"state": "stopping"})
    others = _lease_until_full(db_url, net)  # the cursor wraps: .11 ... .14, then none
    assert address not in others, f"{address} given away while {inst} still runs: {others}"
    assert len(others) == 4
    assert _leases_of(db_url, inst) == [(address, True, True)]
    with unit_of_work(db_url) as session:  # the agent's confirmation
        hva.update_instance(session, inst, {"state": "stopped", "status": "offline",
                                            "host_node_id": None})
    assert _leases_of(db_url, inst) == [(address, False, False)]
    assert _lease_until_full(db_url, net) == [address]  # free again, and the last one


def test_a_failed_stop_keeps_the_addresses(db_url):
    inst, net, address = _running_with_an_address(db_url)
    job = _stop_requested(db_url, inst)
    with unit_of_work(db_url) as session:  # the agent could not stop it
        assert ledger.finish_fail(session, job, {"message": "the domain refused to stop"}
                                  )["finish_status"] == "fail"
    with unit_of_work(db_url, readonly=True) as session:
        assert Instance.by_cuuid(session, inst).state == "running"
    others = _lease_until_full(db_url, net)
    assert address not in others, f"{address} given away while {inst} still runs: {others}"
    assert _leases_of(db_url, inst) == [(address, True, True)]
