"""Network strategies VifTemplate, VifParamTemplate, SpecifyNetwork, NatOneToOne, FlatSingle,
RequestParamToGroup, NetworkGroup and the MAC strategy ByHostNodeGroup: plans (pure), their
configuration, then vifs, MAC and IP leases on a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from collector.errors import (
    NetworkSchedulingError,
    OutOfIpRange,
    OutOfMacRange,
    SchedulerConfigError,
    UnknownGroup,
    UnknownMacRange,
)
from collector.models import DhcpRange, MacLease, MacRange, Network, NetworkVif, NetworkVifIpLease
from collector.models.networks import ipv4_to_i, ipv4_to_s
from collector.scheduling import placement_config as config
from collector.scheduling import vifs as network
from collector.scheduling.candidates import ALL_NETWORKS, GroupMember, VifPlan
from collector.scheduling.strategies import mac_address
from collector.scheduling.strategies import network as vif_plans
from workers.demo.world import make

NW, NAT = "nw-inside1", "nw-outside"


def plans(strategy, vifs, **params):
    return strategy.plan(vifs, {"vifs": vifs, **params})


# --- plans, pure -----------------------------------------------------------------------------

def test_vif_template_takes_the_network_from_the_template_by_vif_name():
    strategy = vif_plans.VifTemplate({"eth0": NW})
    eth0, eth1 = plans(strategy, {
        "eth0": {"network": "nw-ignored", "mac_addr": "525400000001", "ipv4_addr": "10.0.0.5",
                 "nat_network": NAT},
        "eth1": {"network": NW, "security_groups": "sg-a"}})
    assert (eth0.network, eth0.nat_network, eth0.mac_addr, eth0.ipv4_addr) == \
        (NW, None, "525400000001", None)  # the address was for another network
    assert (eth1.index, eth1.network, eth1.security_groups) == (1, None, ("sg-a",))
    kept = plans(strategy, {"eth0": {"network": NW, "ipv4_addr": "10.0.0.5"}})[0]
    assert kept.ipv4_addr == "10.0.0.5"


def test_vif_param_template_is_the_request_without_nat():
    (only,) = plans(vif_plans.VifParamTemplate(), {"eth0": {
        "network": NW, "nat_network": NAT, "nat_ipv4_addr": "192.168.0.9"}})
    assert (only.network, only.nat_network, only.nat_ipv4_addr) == (NW, None, None)


def test_specify_network_leases_only_requested_addresses():
    (only,) = plans(vif_plans.SpecifyNetwork(), {"eth0": {"network": NW, "nat_network": NAT}})
    assert (only.network, only.nat_network, only.auto_address) == (NW, NAT, False)


def test_nat_one_to_one_puts_every_vif_on_the_configured_pair():
    strategy = vif_plans.NatOneToOne(NW, NAT)
    eth0, eth1 = plans(strategy, {"eth0": {"network": NW, "ipv4_addr": "10.0.0.5"},
                                  "eth1": {"network": "nw-other", "ipv4_addr": "10.9.0.5",
                                           "mac_addr": "525400000002"}})
    assert [(p.network, p.nat_network) for p in (eth0, eth1)] == [(NW, NAT)] * 2
    assert (eth0.ipv4_addr, eth1.ipv4_addr, eth1.mac_addr) == ("10.0.0.5", None,
                                                               "525400000002")


def test_flat_single_is_one_vif_on_the_flat_network():
    (only,) = plans(vif_plans.FlatSingle(), {})
    assert only == VifPlan("eth0", 0, network_group=ALL_NETWORKS)
    (named,) = plans(vif_plans.FlatSingle(NW), {"eth1": {"index": 3, "security_groups": "sg-a"},
                                                "eth9": {"index": 7}})
    assert (named.name, named.index, named.network, named.network_group,
            named.security_groups) == ("eth1", 0, NW, None, ("sg-a",))


def test_network_request_param_to_group_pair_default_or_unknown_group():
    strategy = vif_plans.RequestParamToGroup("zone", "nwg-default",
                                             (("east", "nwg-east"),))
    eth0, eth1 = plans(strategy, {"eth0": {"network": NW}, "eth1": {}}, zone="east")
    assert {(p.network, p.network_group, p.group_order) for p in (eth0, eth1)} == \
        {(None, "nwg-east", "sort_index")}
    assert plans(strategy, {"eth0": {}})[0].network_group == "nwg-default"
    assert plans(strategy, {}) == []
    with pytest.raises(UnknownGroup, match="no default network group"):
        plans(vif_plans.RequestParamToGroup("zone"), {"eth0": {}}, zone="west")


def test_network_group_per_vif_group_default_or_named_network():
    strategy = vif_plans.NetworkGroup("nwg-default")
    a, b, c = plans(strategy, {"a": {"network_group": "nwg-mine"}, "b": {}, "c": {"network": NW}})
    assert (a.network_group, a.group_order) == ("nwg-mine", "least_allocation")
    assert (b.network_group, c.network, c.network_group) == ("nwg-default", NW, None)
    assert strategy.plan({}, {}) == [VifPlan("eth0", 0, network_group="nwg-default",
                                             group_order="least_allocation")]
    with pytest.raises(UnknownGroup, match="No default network group set"):
        plans(vif_plans.NetworkGroup(), {"eth0": {}})


def test_a_vif_names_a_network_or_a_group_not_both():
    with pytest.raises(NetworkSchedulingError, match="not both"):
        vif_plans.plan_request_vifs({"eth0": {"network": NW, "network_group": "nwg-x"}})
    with pytest.raises(NetworkSchedulingError, match="malformed network_group"):
        vif_plans.plan_request_vifs({"eth0": {"network_group": NW}})


def test_group_members_order_by_sort_index_or_least_allocation():
    members = [GroupMember("nw-c", 3, 0, 5), GroupMember("nw-a", 1, 2, 1),
               GroupMember("nw-b", 2, 0, 1)]
    assert [m.id for m in vif_plans.order_members(members, "sort_index")] == [2, 3, 1]
    assert [m.id for m in vif_plans.order_members(members, "least_allocation")] == [2, 1, 3]


def std(network_entry=None, mac_entry=None):
    doc = {"host_node_scheduler": "LeastUsage", "storage_node_scheduler": "LeastUsage",
           "network_scheduler": network_entry or "VifsRequestParam"}
    if mac_entry is not None:
        doc["mac_address_scheduler"] = mac_entry
    return {"service_types": {"std": doc}}


def test_configuration_of_each_network_and_mac_strategy():
    st = config.parse_config(std({"strategy": "PerInstance", "default": "VifParamTemplate",
                                  "add": {
        "tmpl": {"strategy": "VifTemplate", "template": {"eth0": NW}},
        "nat": {"strategy": "NatOneToOne", "network_id": NW, "nat_network_id": NAT},
        "flat": "FlatSingle", "manual": "SpecifyNetwork",
        "zone": {"strategy": "RequestParamToGroup", "key": "zone", "default": "nwg-a",
                 "pair": [["east", "nwg-e"]]},
        "group": {"strategy": "NetworkGroup", "network_group_id": "nwg-a",
                  "algorithm": "least_allocation"}}},
        {"strategy": "ByHostNodeGroup", "default": "mr-demomacs",
         "pair": {"hng-shhost": "mr-range1"}})).service_type()
    assert st.network.named == {
        "tmpl": vif_plans.VifTemplate({"eth0": NW}), "nat": vif_plans.NatOneToOne(NW, NAT),
        "flat": vif_plans.FlatSingle(), "manual": vif_plans.SpecifyNetwork(),
        "zone": vif_plans.RequestParamToGroup("zone", "nwg-a", (("east", "nwg-e"),)),
        "group": vif_plans.NetworkGroup("nwg-a")}
    assert st.network.default == vif_plans.VifParamTemplate()
    assert st.mac_address == mac_address.ByHostNodeGroup("mr-demomacs",
                                                         (("hng-shhost", "mr-range1"),))


@pytest.mark.parametrize(("network_entry", "mac_entry", "message"), [
    ({"strategy": "NatOneToOne", "network_id": NW}, None,
     "network_scheduler.nat_network_id: required"),
    ({"strategy": "NatOneToOne", "network_id": "sg-x", "nat_network_id": NAT}, None,
     "network_scheduler.network_id: must be an id nw-"),
    ({"strategy": "VifTemplate", "template": {"eth0": "demo1"}}, None,
     "network_scheduler.template.eth0: must be an id nw-"),
    ({"strategy": "FlatSingle", "network_id": ""}, None,
     "network_scheduler.network_id: must be a non-empty string"),
    ({"strategy": "RequestParamToGroup", "default": "nwg-a"}, None,
     "network_scheduler.key: required"),
    ({"strategy": "RequestParamToGroup", "key": "k", "pair": {"a": "hng-a"}}, None,
     "network_scheduler.pair: must be an id nwg-"),
    ({"strategy": "NetworkGroup", "algorithm": "random"}, None,
     'network_scheduler.algorithm: must be "least_allocation"'),
    (None, {"strategy": "ByHostNodeGroup", "pair": {"hng-a": "nw-a"}},
     "mac_address_scheduler.pair: must be an id mr-"),
    (None, {"strategy": "ByHostNodeGroup", "pair": [["hng-a"]]},
     "mac_address_scheduler.pair: must be a table of strings or a list"),
    (None, {"strategy": "ByHostNodeGroup", "default": "mr-a", "range": "mr-b"},
     "mac_address_scheduler.range: unknown option"),
])
def test_bad_network_or_mac_configuration_names_the_key(network_entry, mac_entry, message):
    with pytest.raises(SchedulerConfigError) as info:
        config.parse_config(std(network_entry, mac_entry))
    assert str(info.value).startswith(f"service_types.std.{message}")


def test_by_host_node_group_ranges_first_matching_pair_in_configured_order_then_default():
    paired = (("hng-a", "mr-a"), ("hng-b", "mr-b"), ("hng-c", "mr-c"))
    groups = frozenset({"hng-c", "hng-a"})
    assert mac_address.ranges_for_groups(groups, paired, "mr-d") == ["mr-a", "mr-c", "mr-d"]
    assert mac_address.ranges_for_groups(frozenset(), paired, "mr-d") == ["mr-d"]
    assert mac_address.ranges_for_groups(frozenset(), paired, None) == []


# --- on a database ---------------------------------------------------------------------------

@pytest.fixture()
def macs(session):
    session.execute(delete(MacRange))
    return make.mac_range(session, range_end=0xFFFF)


def instance(session, vifs, host=None, **params):
    return make.instance(session, host, state="scheduling",
                                request_params={"vifs": vifs, **params})


def build(session, inst, strategy, mac_strategy=None):
    st = config.scheduler_config().service_type()
    if mac_strategy is not None:
        from dataclasses import replace

        st = replace(st, mac_address=mac_strategy)
    request_params = inst.request_params
    return network.build_vifs(session, inst, strategy.plan(request_params["vifs"],
                                                           request_params), st, request_params)


def leases(session, vif):
    return sorted((row.network_id, ipv4_to_s(row.ipv4)) for row in session.scalars(
        select(NetworkVifIpLease).where(NetworkVifIpLease.network_vif_id == vif.id,
                                        NetworkVifIpLease.deleted_at.is_(None))))


def full(session, net):
    """No address left in ``net`` (its DHCP ranges removed)."""
    session.execute(delete(DhcpRange).where(DhcpRange.network_id == net.id))
    return net


def test_vif_template_vifs_on_the_template_network_or_none(session, macs):
    net = make.network(session, "10.41.0.0/24")
    inst = instance(session, {"eth0": {}, "eth1": {"network": net.canonical_uuid}})
    eth0, eth1 = build(session, inst, vif_plans.VifTemplate({"eth0": net.canonical_uuid}))
    assert leases(session, eth0) == [(net.id, "10.41.0.10")]
    assert (eth1.network_id, leases(session, eth1)) == (None, [])


def test_specify_network_leases_what_is_requested_only(session, macs):
    net = make.network(session, "10.42.0.0/24")
    nw = net.canonical_uuid
    inst = instance(session, {"eth0": {"network": nw, "ipv4_addr": "10.42.0.77"},
                              "eth1": {"network": nw}})
    eth0, eth1 = build(session, inst, vif_plans.SpecifyNetwork())
    assert leases(session, eth0) == [(net.id, "10.42.0.77")]
    assert (eth1.network_id, leases(session, eth1)) == (net.id, [])


def test_nat_one_to_one_outside_address_comes_from_the_nat_network(session, macs):
    inside = make.network(session, "10.43.0.0/24")
    outside = make.network(session, "192.168.43.0/24")
    inst = instance(session, {"eth0": {}})
    (vif,) = build(session, inst, vif_plans.NatOneToOne(inside.canonical_uuid,
                                                        outside.canonical_uuid))
    assert (vif.network_id, vif.nat_network_id) == (inside.id, outside.id)
    assert leases(session, vif) == sorted([(inside.id, "10.43.0.10"),
                                           (outside.id, "192.168.43.10")])  # S15


def test_flat_single_uses_the_network_with_the_lowest_id_or_the_configured_one(session, macs):
    net = make.network(session, "10.44.0.0/24")
    lowest = session.scalar(select(func.min(Network.id)))
    # The database is shared: whatever network has the lowest id gets addresses to give.
    base = ipv4_to_i(session.get(Network, lowest).ipv4_network)
    session.add(DhcpRange(network_id=lowest, range_begin=base + 230, range_end=base + 250))
    session.flush()
    (vif,) = build(session, instance(session, {}), vif_plans.FlatSingle())
    assert vif.device_index == 0 and vif.network_id == lowest
    assert len(leases(session, vif)) == 1
    (vif,) = build(session, instance(session, {"eth3": {}}),
                   vif_plans.FlatSingle(net.canonical_uuid))
    assert vif.network_id == net.id and leases(session, vif)[0][1].startswith("10.44.0.")


def test_request_param_to_group_tries_members_by_sort_index_one_vif_whatever(session, macs):
    first = full(session, make.network(session, "10.45.0.0/24"))
    second = make.network(session, "10.46.0.0/24")
    group = make.group(session, [first, second], kind="network")
    strategy = vif_plans.RequestParamToGroup("zone", group.canonical_uuid)
    macs_before = session.scalar(select(func.count()).select_from(MacLease))
    (vif,) = build(session, instance(session, {"eth0": {}}), strategy)
    assert vif.network_id == second.id and leases(session, vif) == [(second.id, "10.46.0.10")]
    assert session.scalar(select(func.count()).select_from(MacLease)) == macs_before + 1  # S20


def test_network_group_takes_the_least_allocated_member(session, macs):
    busy, idle = (make.network(session, "10.47.0.0/24"),
                  make.network(session, "10.48.0.0/24"))
    make.lease_ip(session, None, busy, "10.47.0.50")
    group = make.group(session, [busy, idle], kind="network")
    strategy = vif_plans.NetworkGroup(group.canonical_uuid)
    a, b = build(session, instance(session, {"eth0": {}, "eth1": {}}), strategy)
    assert (a.network_id, b.network_id) == (idle.id, busy.id)  # 0 then 1 vs 1: tie by index


def test_a_group_with_no_address_left_is_out_of_ip_range_and_leaves_nothing(session, macs):
    nets = [full(session, make.network(session, f"10.49.{n}.0/24")) for n in (1, 2)]
    group = make.group(session, nets, kind="network")
    inst = instance(session, {"eth0": {}})
    before = session.scalar(select(func.count()).select_from(NetworkVif))
    with pytest.raises(OutOfIpRange, match="No available ip addresses left in network group"):
        with session.begin_nested():
            build(session, inst, vif_plans.NetworkGroup(group.canonical_uuid))
    assert session.scalar(select(func.count()).select_from(NetworkVif)) == before
    empty = make.group(session, [], kind="network")
    with pytest.raises(OutOfIpRange):
        build(session, inst, vif_plans.NetworkGroup(empty.canonical_uuid))


def test_an_unknown_network_group_is_typed(session, macs):
    with pytest.raises(UnknownGroup, match="Unknown network group: nwg-zzzzzzzz"):
        build(session, instance(session, {"eth0": {}}), vif_plans.NetworkGroup("nwg-zzzzzzzz"))


def mac_ranges(session, *names_and_begin):
    """A two-address range ``mr-<name>`` from each ``begin``: name -> its id."""
    return {name: make.mac_range(session, range_begin=begin, range_end=begin + 1,
                                 uuid=name).canonical_uuid for name, begin in names_and_begin}


def device(vif):
    return int(vif.mac_addr, 16) & 0xFFFFFF


def test_by_host_node_group_takes_the_range_of_the_hosts_first_paired_group(session):
    session.execute(delete(MacRange))
    r = mac_ranges(session, ("rdefault", 0x10), ("rgold", 0x20), ("rsilver", 0x30))
    host = make.host_node(session)
    gold = make.group(session, [host]).canonical_uuid
    silver = make.group(session, [host]).canonical_uuid
    strategy = mac_address.ByHostNodeGroup(r["rdefault"], (("hng-nothing", r["rdefault"]),
                                                           (silver, r["rsilver"]),
                                                           (gold, r["rgold"])))
    vifs = build(session, instance(session, {f"eth{n}": {} for n in range(5)}, host),
                 vif_plans.VifsRequestParam(), strategy)
    # silver is paired first: its two addresses, then gold's, then the default's
    assert [device(v) for v in vifs] == [0x30, 0x31, 0x20, 0x21, 0x10]
    (last,) = build(session, instance(session, {"eth0": {}}, host),
                    vif_plans.VifsRequestParam(), strategy)
    assert device(last) == 0x11
    with pytest.raises(OutOfMacRange):
        build(session, instance(session, {"eth0": {}}, host), vif_plans.VifsRequestParam(),
              strategy)


def test_by_host_node_group_without_host_or_group_uses_the_default(session):
    session.execute(delete(MacRange))
    r = mac_ranges(session, ("rdef", 0x40), ("rgold", 0x50))
    strategy = mac_address.ByHostNodeGroup(r["rdef"], (("hng-gold0000", r["rgold"]),))
    (vif,) = build(session, instance(session, {"eth0": {}}), vif_plans.VifsRequestParam(),
                   strategy)
    assert device(vif) == 0x40
    (vif,) = build(session, instance(session, {"eth0": {}}, make.host_node(session)),
                   vif_plans.VifsRequestParam(), strategy)
    assert device(vif) == 0x41
    manual = build(session, instance(session, {"eth0": {"mac_addr": "525400000051"}}),
                   vif_plans.VifsRequestParam(), strategy)[0]
    assert manual.mac_addr == "525400000051"


def test_by_host_node_group_unknown_or_missing_ranges_are_typed(session):
    session.execute(delete(MacRange))
    r = mac_ranges(session, ("rone", 0x60))
    host = make.host_node(session)
    gold = make.group(session, [host]).canonical_uuid
    inst = instance(session, {"eth0": {}}, host)
    with pytest.raises(UnknownMacRange, match="'mr-absent0' not found"):
        build(session, inst, vif_plans.VifsRequestParam(),
              mac_address.ByHostNodeGroup("mr-absent0", ((gold, r["rone"]),)))
    with pytest.raises(UnknownMacRange, match="No default MAC address range"):
        build(session, instance(session, {"eth0": {}}), vif_plans.VifsRequestParam(),
              mac_address.ByHostNodeGroup(None, ((gold, r["rone"]),)))
    paired_only = mac_address.ByHostNodeGroup(None, (("hng-gone0000", "mr-gone0000"),
                                                     (gold, r["rone"])))
    (vif,) = build(session, inst, vif_plans.VifsRequestParam(), paired_only)
    assert device(vif) == 0x60  # a paired range that does not exist is passed over


def test_the_api_accepts_a_network_group_per_vif(session, macs):
    from collector.errors import InvalidParameter, UnknownNetworkID
    from collector.services.api import instances as api
    from collector.services.api import requests

    group = make.group(session, [make.network(session, "10.50.0.0/24")], kind="network")
    checked = requests.vif_params({"eth0": {"network_group": group.canonical_uuid}})
    assert checked == {"eth0": {"network_group": group.canonical_uuid}}
    api._check_vif_references(session, checked)
    with pytest.raises(UnknownNetworkID):
        api._check_vif_references(
            session, requests.vif_params({"eth0": {"network_group": "nwg-zzzzzzzz"}}))
    with pytest.raises(InvalidParameter):
        requests.vif_params({"eth0": {"network_group": "nw-zzzzzzzz"}})
