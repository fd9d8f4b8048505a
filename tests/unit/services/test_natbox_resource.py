"""natbox routes and resource samples, with a session alone."""

from datetime import timedelta

import pytest

from collector.errors import InvalidArgument, UnknownNetworkRouteID
from collector.models import NetworkRoute, ResourceSample
from collector.services import natbox, resource
from collector.timeutil import to_iso, utcnow
from workers.demo.world import make


def _route(session, dc_name):
    dc = make.dc_network(session, dc_name)
    inner_net = make.network(session, "10.5.0.0/24", dc=dc)
    outer_net = make.network(session, "198.51.100.0/24")
    inst = make.instance(session, make.host_node(session))
    inner = make.vif(session, inst, inner_net, ipv4="10.5.0.7")
    outer = make.vif(session, None, outer_net, ipv4="198.51.100.7")
    route = NetworkRoute(inner_lease_id=inner.ip_leases[0].id, outer_lease_id=outer.ip_leases[0].id)
    session.add(route)
    session.flush()
    return route, inner


def test_routes_of_a_dc_network(session):
    name = f"dcroute{make.secrets.token_hex(3)}"
    route, inner = _route(session, name)
    expected = {"id": route.id, "outer_ipv4": "198.51.100.7", "inner_ipv4": "10.5.0.7"}
    assert natbox.get_network_route(session, route.id, name) == expected
    assert natbox.get_network_route(session, route.id, "elsewhere") is None
    assert natbox.get_alive_network_routes(session, name) == [expected]
    inner.ip_leases[0].deleted_at = utcnow()  # a released lease no longer routes
    assert natbox.get_alive_network_routes(session, name) == []
    with pytest.raises(UnknownNetworkRouteID):
        natbox.get_network_route(session, 10**9, name)


def test_samples_are_stored_queried_and_purged(session):
    rid = f"i-{make.secrets.token_hex(4)}"
    old = to_iso(utcnow() - timedelta(days=10))
    resource.resource_store(session, rid, {"cpu.usage": 12.5, "time": old})
    resource.resource_store(session, rid, {"cpu.usage": 50.0})
    samples = resource.get_resource_samples(session, rid)
    assert [s["metrics"]["cpu.usage"] for s in samples] == [50.0, 12.5]
    assert len(resource.get_resource_samples(session, rid, since=to_iso(
        utcnow() - timedelta(days=1)))) == 1
    assert resource.purge_resource_samples(session, 7 * 86400) >= 1
    assert session.query(ResourceSample).filter_by(resource_id=rid).count() == 1
    with pytest.raises(InvalidArgument):
        resource.resource_store(session, rid, {})
    with pytest.raises(InvalidArgument):
        resource.resource_store(session, rid, {"x": "y" * 70000})
