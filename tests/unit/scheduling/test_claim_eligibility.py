"""A claim checks, in its own statement, everything that makes a host eligible.

Room, ``scheduling_enabled`` and the node's state are all in the claiming UPDATE's WHERE:
whatever a caller ranked earlier, a host drained or offline by the time of the claim is
refused like a full one. An over-commit skips only the room; the API's explicit host
(``drained_ok``) only the scheduling flag; a forced claim (a fact recorded) nothing.
The interleavings on PostgreSQL are in
``tests/integration/placement/test_claims_recheck_eligibility.py``.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import update

from collector.errors import InvalidHostNodeID
from collector.models import HostNode, NodeState
from collector.scheduling import capacity, placement
from workers.demo.world import make


def _host(session, enabled=True, node_state="online", cpu=4):
    hv = f"kvm-{secrets.token_hex(3)}"
    host = make.host_node(session, hypervisor=hv, offering_cpu_cores=cpu,
                          offering_memory_size=cpu * 1024, scheduling_enabled=enabled)
    if node_state != "online":
        session.execute(update(NodeState).where(NodeState.node_id == host.node_id)
                        .values(state=node_state))
    return host


def _instance(session, host, cpu=1):
    return make.instance(session, state="scheduling", hypervisor=host.hypervisor,
                         cpu_cores=cpu, memory_size=cpu * 1024)


def _used_cpu(session, host):
    session.refresh(host)
    return host.used_cpu_cores


@pytest.mark.parametrize(("enabled", "node_state"), [
    (False, "online"), (True, "offline"), (True, "timeout"), (False, "offline")],
    ids=["drained", "offline", "timeout", "drained-offline"])
def test_a_claim_on_a_host_that_left_placement_changes_nothing(session, enabled, node_state):
    host = _host(session, enabled, node_state)
    inst = _instance(session, host)
    assert not capacity.claim_host(session, host.id, inst, 0)
    assert not capacity.claim_host(session, host.id, inst, 0, over_commit=True)
    assert inst.host_node_id is None and _used_cpu(session, host) == 0


def test_a_host_without_a_node_row_is_not_claimed(session):
    host = _host(session)
    session.execute(update(NodeState).where(NodeState.node_id == host.node_id)
                    .values(node_id=f"hva.gone{secrets.token_hex(3)}"))
    assert not capacity.claim_host(session, host.id, _instance(session, host), 0)


def test_an_over_commit_skips_the_room_only(session):
    host = _host(session, cpu=1)
    assert capacity.claim_host(session, host.id, _instance(session, host), 0)
    full = _instance(session, host)
    assert not capacity.claim_host(session, host.id, full, 0)
    assert capacity.claim_host(session, host.id, full, 0, over_commit=True)
    assert _used_cpu(session, host) == 2
    assert capacity.reconcile(session) == []


def test_the_explicit_host_may_be_drained_but_must_be_online(session):
    drained = _host(session, enabled=False)
    assert capacity.claim_host(session, drained.id, _instance(session, drained), 0,
                               drained_ok=True)
    offline = _host(session, node_state="offline")
    assert not capacity.claim_host(session, offline.id, _instance(session, offline), 0,
                                   drained_ok=True)


def test_a_forced_claim_records_a_fact_whatever_the_host(session):
    host = _host(session, enabled=False, node_state="offline", cpu=1)
    inst = _instance(session, host, cpu=2)
    assert capacity.claim_host(session, host.id, inst, 0, force=True)
    assert inst.host_node_id == host.id and _used_cpu(session, host) == 2


def test_an_explicit_host_gone_offline_before_its_claim_is_invalid_not_full(session,
                                                                          monkeypatch):
    host = _host(session)
    inst = _instance(session, host)
    # The check reads the node online; it goes offline before the claim (another
    # transaction's commit, played here in the same one).
    monkeypatch.setattr(HostNode, "status", property(lambda self: "online"))
    session.execute(update(NodeState).where(NodeState.node_id == host.node_id)
                    .values(state="offline"))
    with pytest.raises(InvalidHostNodeID):
        placement.assign_explicit_host(session, inst, host.canonical_uuid)
    assert inst.host_node_id is None and _used_cpu(session, host) == 0
