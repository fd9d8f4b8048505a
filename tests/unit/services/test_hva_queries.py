"""The heavy hva-collector answers cost a fixed number of queries, whatever the node size."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from collector.models import SecurityGroupReference
from collector.services import hva, hva_netfilter, hva_network, monitoring
from workers.demo.world import make


@contextmanager
def count_queries(session):
    engine = session.get_bind()
    counter = {"n": 0}

    def before(*_args):
        counter["n"] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", before)


GROUPS = 10  # fewer than the smaller node's grouped vnics: both sizes reference every group


def build_node(session, vnics: int, groups: int = GROUPS):
    host = make.host_node(session)
    net = make.network(session, "10.64.0.0/16")
    sgs = [make.security_group(session, rule=f"tcp:{22 + i},{22 + i},ip4:0.0.0.0")
           for i in range(groups)]
    for a, b in zip(sgs, sgs[1:], strict=False):  # each group references the next
        session.add(SecurityGroupReference(referencer_id=a.id, referencee_id=b.id))
    per_instance, grouped = 4, 0
    for i in range(0, vnics, per_instance):
        inst = make.instance(session, host)
        for j in range(per_instance):
            n = i + j
            member_of = []
            if n % 10:  # one vif in ten has no group: it is an "empty" vnic
                member_of, grouped = [sgs[grouped % groups]], grouped + 1
            make.vif(session, inst, net, ipv4=f"10.64.{n // 250}.{n % 250 + 2}",
                            security_groups=member_of, device_index=j)
    session.flush()
    session.expire_all()
    return host, net


CALLS = {
    "get_netfilter_data": lambda session, node_id, net_id: hva_netfilter.get_netfilter_data(
        session, node_id),
    "get_dhcp_conf": lambda session, node_id, net_id: hva_network.get_dhcp_conf(session, net_id),
    "get_resource_monitor_data": lambda session, node_id, net_id:
        monitoring.get_resource_monitor_data(session, node_id),
}


def _check_size(call: str, doc, vnics: int, net_id: str) -> None:
    if call == "get_netfilter_data":
        assert len(doc["empty_vnics"]) == vnics // 10
        assert len(doc["security_groups"]) == GROUPS
    elif call == "get_dhcp_conf":
        assert len(doc[net_id]["mac2addr"]) == vnics
    else:
        assert sum(len(i["vif"]) for i in doc) == vnics


@pytest.mark.parametrize("call", sorted(CALLS))
def test_query_count_does_not_grow_with_the_vnics(session, call):
    counts = []
    # Per-row loading would show as 3x the queries (40 more at least, past the bound below);
    # multiples of 4 (vnics per instance) and 10 (one vnic in ten is empty).
    for vnics in (20, 60):
        host, net = build_node(session, vnics)
        node_id, net_id = host.node_id, net.canonical_uuid
        # Steady state: a first call pays one-time costs (connection set-up, refreshes).
        CALLS[call](session, node_id, net_id)
        session.expire_all()
        with count_queries(session) as counter:
            doc = CALLS[call](session, node_id, net_id)
        _check_size(call, doc, vnics, net_id)
        counts.append(counter["n"])
        session.expire_all()
    assert counts[0] == counts[1], counts
    assert counts[1] <= 40  # a handful of queries per loaded relationship, no more


def test_get_instance_query_count_does_not_grow_with_vifs(session):
    counts = []
    for vifs in (2, 40):
        host = make.host_node(session)
        net = make.network(session, "10.65.0.0/16")
        inst = make.running_instance(session, host, net=net, ipv4="10.65.0.2")
        for n in range(vifs):
            make.vif(session, inst, net, ipv4=f"10.65.1.{n + 2}", device_index=n + 1)
        instance_id = inst.canonical_uuid
        session.expire_all()
        with count_queries(session) as counter:
            doc = hva.get_instance(session, instance_id)
        assert len(doc["vif"]) == vifs + 1
        counts.append(counter["n"])
    assert counts[0] == counts[1], counts
    # PostgreSQL: one statement (one round trip); SQLite: one per kind of row.
    assert counts[0] == (1 if session.get_bind().dialect.name == "postgresql" else 10), counts


def _statements(session, fn):
    """The SQL statements ``fn`` runs (beyond the session's first BEGIN)."""
    session.connection()  # the transaction is open before counting
    seen = []
    engine = session.get_bind()

    def before(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()).upper())

    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return seen


def test_a_state_report_reads_and_writes_only_the_instance_row(session):
    inst = make.running_instance(session)
    for n in range(3):
        make.vif(session, inst, None, device_index=n + 1)
    seen = _statements(session, lambda: hva.update_instance(
        session, inst.canonical_uuid, {"state": "halting", "status": "offline"}))
    assert len(seen) == 2, seen
    assert seen[0].startswith("SELECT INSTANCES.ID, INSTANCES.STATE")
    assert seen[0].endswith("FOR UPDATE") or session.get_bind().dialect.name == "sqlite"
    assert seen[1].startswith("UPDATE INSTANCES SET") and "WHERE INSTANCES.ID" in seen[1]
    session.refresh(inst)
    assert (inst.state, inst.status) == ("halting", "offline")


def test_a_report_that_changes_nothing_writes_nothing(session):
    inst = make.running_instance(session)
    hva.update_instance(session, inst.canonical_uuid, {
        "runtime_config": {"vnc": 1}, "password_will_be_deleted_at": "2030-01-02T03:04:05Z",
        "encrypted_password": "x"})
    session.refresh(inst)
    before = inst.updated_at
    seen = _statements(session, lambda: hva.update_instance(session, inst.canonical_uuid, {
        "state": "running", "status": inst.status, "runtime_config": {"vnc": 1},
        "password_will_be_deleted_at": "2030-01-02T03:04:05.000000+00:00",
        "encrypted_password": "x", "host_node_id": f"hn-{inst.host_node.uuid}"}))
    assert not [s for s in seen if s.startswith("UPDATE")], seen
    session.refresh(inst)
    assert inst.updated_at == before


def test_a_report_is_seen_by_the_objects_of_the_session(session):
    inst = make.running_instance(session)
    hva.update_instance(session, inst.canonical_uuid, {"status": "offline",
                                                      "runtime_config": {"a": 1}})
    assert (inst.status, inst.runtime_config) == ("offline", {"a": 1})
    inst.state = "halting"  # not flushed: the report's read sees it all the same
    with pytest.raises(Exception, match="cannot go from 'halting' to 'starting'"):
        hva.update_instance(session, inst.canonical_uuid, {"state": "starting"})
