"""Every hva-collector method through a real worker: happy path, unknown id, bad argument."""

from __future__ import annotations

import pytest

from collector.db import unit_of_work
from tests.support.rpc import method_tests, rpc_error
from workers.agent.client import RpcError
from workers.demo.world import make

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(worker):
    """A fresh host, network, security group, instance and image for each test: tests change
    them (update, finalize) and must not see one another's changes."""
    with unit_of_work(worker.db_url) as session:
        host = make.host_node(session)
        other = make.host_node(session)
        net = make.network(session, "10.30.0.0/24")
        group = make.security_group(session, rule="tcp:443,443,ip4:0.0.0.0")
        inst = make.instance(session, host)
        vif = make.vif(session, inst, net, ipv4="10.30.0.5", security_groups=[group])
        image = make.image(session, state="creating")
        return {"host": host.canonical_uuid, "node": host.node_id, "other": other.node_id,
                "net": net.canonical_uuid, "sg": group.canonical_uuid,
                "inst": inst.canonical_uuid, "vif": vif.canonical_uuid,
                "image": image.canonical_uuid}


HAPPY = [
    ("get_instance", lambda w: [w["inst"]], lambda r, w, read: r["uuid"] == w["inst"]),
    ("update_instance", lambda w: [w["inst"], {"status": "online"}],
     lambda r, w, read: r is None and read("get_instance", w["inst"])["status"] == "online"),
    ("update_image", lambda w: [w["image"], {"state": "available"}],
     lambda r, w, read: r is None and read("sta-collector.get_image", w["image"])["state"]
     == "available"),
    ("get_network", lambda w: [w["net"]], lambda r, w, read: r["uuid"] == w["net"] and r["prefix"] == 24),
    ("get_nic", lambda w: [w["vif"]], lambda r, w, read: r["address"] == "10.30.0.5"),
    ("get_networks", lambda w: [], lambda r, w, read: w["net"] in {n["uuid"] for n in r}),
    ("get_host_nodes_index", lambda w: [], lambda r, w, read: w["host"] in r),
    ("get_host_node", lambda w: [w["host"]],
     lambda r, w, read: r["id"] == w["host"] and "node_id" not in r and r["status"] == "online"),
    ("prepare_host_node_vnet", lambda w: [w["host"], w["net"]],  # a second call: the same vnet
     lambda r, w, read: r["broadcast_addr"].count(":") == 5
     and read("prepare_host_node_vnet", w["host"], w["net"]) == r),
    ("get_dhcp_conf", lambda w: [w["net"]], lambda r, w, read: list(r) == [w["net"]]),
    ("get_instance_monitor_data", lambda w: [w["node"]],
     lambda r, w, read: [i["uuid"] for i in r] == [w["inst"]]),
    ("get_security_groups_of_vnic", lambda w: [w["vif"]],
     lambda r, w, read: [g["id"] for g in r] == [w["sg"]]),
    ("get_referencers_of_security_group", lambda w: [w["sg"]], lambda r, w, read: r == {}),
    ("get_rules_of_security_group", lambda w: [w["sg"]],
     lambda r, w, read: r[0]["ip_fport"] == 443),
    ("get_referencees_of_security_group", lambda w: [w["sg"]], lambda r, w, read: r == {}),
    ("get_netfilter_security_group", lambda w: [w["sg"], w["node"]],
     lambda r, w, read: list(r["local_vnics"]) == [w["vif"]]),
    ("get_netfilter_vnic", lambda w: [w["vif"]], lambda r, w, read: r["uuid"] == w["vif"]),
    ("get_netfilter_vnic_with_node_id", lambda w: [w["vif"]],
     lambda r, w, read: r["node_id"] == w["node"]),
    ("get_netfilter_network", lambda w: [w["net"]], lambda r, w, read: r["uuid"] == w["net"]),
    ("get_netfilter_data", lambda w: [w["node"]],
     lambda r, w, read: list(r["security_groups"]) == [w["sg"]]),
    ("get_resource_monitor_data", lambda w: [w["node"]],
     lambda r, w, read: r[0]["vif"][0]["vif_id"] == w["vif"]),
    ("get_resource_monitor_ids", lambda w: [w["node"]], lambda r, w, read: r == [w["inst"]]),
    ("get_external_monitor_target_host_nodes", lambda w: [], lambda r, w, read: w["host"] in r),
    ("finalize_instance", lambda w: [w["inst"]],
     lambda r, w, read: r is None and read("get_instance", w["inst"])["state"] == "terminated"),
]
# switch_instance_host_node moves a live instance: tested on its own below.

UNKNOWN = [
    ("get_instance", ["i-zzzzzzzz"], "UnknownInstanceID"),
    ("update_instance", ["i-zzzzzzzz", {"status": "online"}], "UnknownInstanceID"),
    ("finalize_instance", ["i-zzzzzzzz"], "UnknownInstanceID"),
    ("update_image", ["wmi-zzzzzzzz", {"state": "available"}], "UnknownImageID"),
    ("get_network", ["nw-zzzzzzzz"], "UnknownNetworkID"),
    ("get_nic", ["vif-zzzzzzzz"], "UnknownNIC"),
    ("get_host_node", ["hn-zzzzzzzz"], "UnknownHostNodeID"),
    ("prepare_host_node_vnet", ["hn-zzzzzzzz", "nw-zzzzzzzz"], "UnknownHostNodeID"),
    ("get_dhcp_conf", ["nw-zzzzzzzz"], "UnknownNetworkID"),
    ("get_instance_monitor_data", ["hva.nothere"], "UnknownNodeID"),
    ("get_security_groups_of_vnic", ["vif-zzzzzzzz"], "UnknownVnicID"),
    ("get_referencers_of_security_group", ["sg-zzzzzzzz"], "UnknownSecurityGroupID"),
    ("get_rules_of_security_group", ["sg-zzzzzzzz"], "UnknownSecurityGroupID"),
    ("get_referencees_of_security_group", ["sg-zzzzzzzz"], "UnknownSecurityGroupID"),
    ("get_resource_monitor_data", ["hva.nothere"], "UnknownNodeID"),
    ("get_resource_monitor_ids", ["hva.nothere"], "UnknownNodeID"),
    ("switch_instance_host_node", ["i-zzzzzzzz", "hva.nothere"], "UnknownInstanceID"),
]

NULL_WHEN_UNKNOWN = [
    ("get_netfilter_security_group", ["sg-zzzzzzzz", "hva.x"]),
    ("get_netfilter_vnic", ["vif-zzzzzzzz"]),
    ("get_netfilter_vnic_with_node_id", ["vif-zzzzzzzz"]),
    ("get_netfilter_network", ["nw-zzzzzzzz"]),
]

BAD = [(method, args) for method, args in [
    ("get_instance", [1]), ("update_instance", ["i-12345678", "state"]),
    ("finalize_instance", ["i-12345678", 5]), ("update_image", ["wmi-12345678", {"bogus": 1}]),
    ("get_network", ["vif-12345678"]), ("get_nic", ["no-dash-id!"]), ("get_networks", ["x"]),
    ("get_host_nodes_index", [1]), ("get_host_node", ["nw-12345678"]),
    ("prepare_host_node_vnet", ["hn-12345678"]), ("get_dhcp_conf", [None]),
    ("get_instance_monitor_data", [[]]), ("get_security_groups_of_vnic", ["sg-12345678"]),
    ("get_referencers_of_security_group", [{}]), ("get_rules_of_security_group", ["vif-1"]),
    ("get_referencees_of_security_group", [3.5]),
    ("get_netfilter_security_group", ["sg-12345678"]), ("get_netfilter_vnic", ["nw-12345678"]),
    ("get_netfilter_vnic_with_node_id", [7]), ("get_netfilter_network", ["sg-12345678"]),
    ("get_netfilter_data", []), ("get_resource_monitor_data", [True]),
    ("get_resource_monitor_ids", ["a", "b"]), ("switch_instance_host_node", ["i-12345678"]),
    ("get_external_monitor_target_host_nodes", ["extra"]),
]]


test_happy_path, test_unknown_id = method_tests("hva-collector", HAPPY, UNKNOWN)


@pytest.mark.parametrize("method, args", NULL_WHEN_UNKNOWN, ids=[c[0] for c in NULL_WHEN_UNKNOWN])
def test_netfilter_lookups_of_unknown_ids_answer_null(collector_client, method, args):
    assert collector_client.call("hva-collector", method, *args) is None


@pytest.mark.parametrize("method, args", BAD, ids=[c[0] for c in BAD])
def test_bad_argument(collector_client, method, args):
    assert rpc_error(collector_client, "hva-collector", method, *args).error_type == \
        "InvalidArgument"


def test_switch_instance_host_node(collector_client, worker):
    with unit_of_work(worker.db_url) as session:
        inst = make.instance(session, make.host_node(session))
        dest = make.host_node(session)
        inst_id, dest_node = inst.canonical_uuid, dest.node_id
    hva = collector_client.rpc("hva-collector")
    assert hva.switch_instance_host_node(inst_id, dest_node) is True
    assert hva.get_instance(inst_id)["host_node"]["node_id"] == dest_node
    with pytest.raises(RpcError) as info:
        hva.switch_instance_host_node(inst_id, "hva.nothere")
    assert info.value.error_type == "UnknownNodeID"
