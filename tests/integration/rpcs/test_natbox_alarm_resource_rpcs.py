"""natbox-, alarm- and resource-collector methods through a real worker."""

from __future__ import annotations

import pytest

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import NetworkRoute, ResourceSample
from collector.timeutil import utcnow
from workers.agent.client import RpcError
from workers.demo.world import make

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(worker):
    """A fresh route, instance, alarms and resource sample for each test: tests change them."""
    with unit_of_work(worker.db_url) as session:
        dc = make.dc_network(session, f"dcn{new_uuid()}")
        inner_net = make.network(session, "10.6.0.0/24", dc=dc)
        outer_net = make.network(session, "203.0.113.0/24")
        host = make.host_node(session)
        inst = make.instance(session, host)
        inner = make.vif(session, inst, inner_net, ipv4="10.6.0.9")
        outer = make.vif(session, None, outer_net, ipv4="203.0.113.9")
        route = NetworkRoute(inner_lease_id=inner.ip_leases[0].id,
                             outer_lease_id=outer.ip_leases[0].id)
        session.add(route)
        log_alarm = make.alarm(session, inst, "log")
        cpu_alarm = make.alarm(session, inst, "cpu.usage")
        session.add(ResourceSample(resource_id=inst.canonical_uuid, sampled_at=utcnow(),
                                   metrics={"cpu.usage": 3.5}))
        session.flush()
        return {"dc": dc.name, "route": route.id, "inst": inst.canonical_uuid,
                "node": host.node_id, "log": log_alarm.canonical_uuid,
                "cpu": cpu_alarm.canonical_uuid}


HAPPY = [
    ("natbox-collector", "get_network_route", lambda w: [w["route"], w["dc"]],
     lambda r, w, read: r == {"id": w["route"], "outer_ipv4": "203.0.113.9", "inner_ipv4": "10.6.0.9"}),
    ("natbox-collector", "get_alive_network_routes", lambda w: [w["dc"]],
     lambda r, w, read: [x["id"] for x in r] == [w["route"]]),
    ("alarm-collector", "get_alarm", lambda w: [w["log"]], lambda r, w, read: r["uuid"] == w["log"]),
    ("alarm-collector", "get_alarms", lambda w: [[w["log"], w["cpu"]]],
     lambda r, w, read: {a["uuid"] for a in r} == {w["log"], w["cpu"]}),
    ("alarm-collector", "get_resource_alarms", lambda w: [w["inst"]],
     lambda r, w, read: [a["uuid"] for a in r] == [w["cpu"]]),
    ("alarm-collector", "get_log_alarms", lambda w: [w["node"]],
     lambda r, w, read: [a["uuid"] for a in r] == [w["log"]]),
    ("alarm-collector", "update_alarm",
     lambda w: [w["cpu"], {"state": "alarm", "last_evaluated_value": 91.5}],
     lambda r, w, read: r is None and read("alarm-collector", "get_alarm", w["cpu"])["state"]
     == "alarm"),
    ("resource-collector", "resource_store", lambda w: [w["inst"], {"memory.usage": 7}],
     lambda r, w, read: r is None and {"memory.usage": 7} in [
         x["metrics"] for x in read("resource-collector", "get_resource_samples", w["inst"])]),
    ("resource-collector", "get_resource_samples", lambda w: [w["inst"]],  # the world's sample
     lambda r, w, read: [x["metrics"] for x in r] == [{"cpu.usage": 3.5}]),
]

UNKNOWN = [
    ("natbox-collector", "get_network_route", [10**9, "dcn"], "UnknownNetworkRouteID"),
    ("alarm-collector", "get_alarm", ["alm-zzzzzzzz"], "UnknownAlarmID"),
    ("alarm-collector", "get_log_alarms", ["hva.nothere"], "UnknownNodeID"),
    ("alarm-collector", "update_alarm", ["alm-zzzzzzzz", {"state": "ok"}], "UnknownAlarmID"),
]

# Lookups by a list or a name answer with what exists: unknown ids are simply absent.
EMPTY_WHEN_UNKNOWN = [
    ("natbox-collector", "get_alive_network_routes", ["dcn-nothere"]),
    ("alarm-collector", "get_alarms", [["alm-zzzzzzzz"]]),
    ("alarm-collector", "get_resource_alarms", [["i-zzzzzzzz"]]),
    ("resource-collector", "get_resource_samples", ["i-zzzzzzzz"]),
]

BAD = [
    ("natbox-collector", "get_network_route", ["one", "dcn"]),
    ("natbox-collector", "get_alive_network_routes", [3]),
    ("alarm-collector", "get_alarm", ["i-12345678"]),
    ("alarm-collector", "get_alarms", ["alm-12345678"]),
    ("alarm-collector", "get_resource_alarms", [5]),
    ("alarm-collector", "get_log_alarms", []),
    ("alarm-collector", "update_alarm", ["alm-12345678", {"state": "on fire"}]),
    ("resource-collector", "resource_store", ["i-12345678", ["not", "a", "dict"]]),
    ("resource-collector", "get_resource_samples", ["i-12345678", None, 0]),
]


@pytest.mark.parametrize("endpoint, method, args, check", HAPPY,
                         ids=[f"{c[0]}.{c[1]}" for c in HAPPY])
def test_happy_path(collector_client, world, endpoint, method, args, check):
    result = collector_client.call(endpoint, method, *args(world))
    assert check(result, world, collector_client.call)


@pytest.mark.parametrize("endpoint, method, args, error", UNKNOWN,
                         ids=[f"{c[0]}.{c[1]}" for c in UNKNOWN])
def test_unknown_id(collector_client, endpoint, method, args, error):
    with pytest.raises(RpcError) as info:
        collector_client.call(endpoint, method, *args)
    assert info.value.error_type == error


@pytest.mark.parametrize("endpoint, method, args", EMPTY_WHEN_UNKNOWN,
                         ids=[f"{c[0]}.{c[1]}" for c in EMPTY_WHEN_UNKNOWN])
def test_list_lookups_of_unknown_ids_answer_empty(collector_client, endpoint, method, args):
    assert collector_client.call(endpoint, method, *args) == []


def test_get_alarms_leaves_unknown_ids_out(collector_client, world):
    found = collector_client.rpc("alarm-collector").get_alarms([world["log"], "alm-zzzzzzzz"])
    assert [a["uuid"] for a in found] == [world["log"]]


@pytest.mark.parametrize("endpoint, method, args", BAD, ids=[f"{c[0]}.{c[1]}" for c in BAD])
def test_bad_argument(collector_client, endpoint, method, args):
    with pytest.raises(RpcError) as info:
        collector_client.call(endpoint, method, *args)
    assert info.value.error_type == "InvalidArgument"


def test_alarm_update_is_stored_and_samples_come_back(collector_client, world):
    alarms = collector_client.rpc("alarm-collector")
    alarms.update_alarm(world["cpu"], {"state": "ok", "last_evaluated_at": "2026-03-01T00:00:00Z"})
    doc = alarms.get_alarm(world["cpu"])
    assert doc["state"] == "ok" and doc["last_evaluated_at"] == "2026-03-01T00:00:00Z"
    res = collector_client.rpc("resource-collector")
    rid = f"i-{new_uuid()}"
    res.resource_store(rid, {"memory.usage": 42, "time": "2026-03-01T00:00:00Z"})
    assert res.get_resource_samples(rid) == [
        {"resource_id": rid, "sampled_at": "2026-03-01T00:00:00Z",
         "metrics": {"memory.usage": 42}}]
