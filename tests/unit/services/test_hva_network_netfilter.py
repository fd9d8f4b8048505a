"""hva-collector's network, host and netfilter answers, with a session alone."""

import pytest

from collector.errors import InvalidArgument, UnknownNetworkID, UnknownNIC, UnknownNodeID
from collector.models import NetworkGroup, NodeState, TagMapping
from collector.services import host_nodes, hva_netfilter, hva_network, monitoring
from collector.timeutil import utcnow
from workers.demo.world import make


def test_dhcp_conf_for_a_network_and_a_network_group(session):
    net = make.network(session, "10.20.0.0/24", domain_name="cloud.local")
    inst = make.instance(session, make.host_node(session), hostname="web1",
                                account_id="a-acme0001")
    vif = make.vif(session, inst, net, ipv4="10.20.0.11")
    make.vif(session, None, net, ipv4="10.20.0.12")  # no instance: not listed
    segment = hva_network.get_dhcp_conf(session, net.canonical_uuid)[net.canonical_uuid]
    assert segment["ipv4_first"] == "10.20.0.1" and segment["ipv4_last"] == "10.20.0.254"
    assert segment["netmask"] == "255.255.255.0" and segment["prefix"] == 24
    assert segment["mac2addr"] == [{"mac_addr": vif.pretty_mac_addr(), "ipaddr": "10.20.0.11"}]
    assert segment["addr2host"] == [{"hostname": "web1.acme0001.cloud.local",
                                     "ipaddr": "10.20.0.11"}]
    group = NetworkGroup(name=f"g{make.secrets.token_hex(3)}")
    session.add(group)
    session.flush()
    session.add(TagMapping(tag_id=group.id, uuid=net.canonical_uuid))
    session.flush()
    assert list(hva_network.get_dhcp_conf(session, group.canonical_uuid)) == [net.canonical_uuid]
    with pytest.raises(UnknownNetworkID):
        hva_network.get_dhcp_conf(session, "nw-zzzzzzzz")
    with pytest.raises(UnknownNetworkID):
        hva_network.get_dhcp_conf(session, inst.canonical_uuid)


def test_vnet_is_prepared_once(session):
    host = make.host_node(session)
    net = make.network(session)
    first = hva_network.prepare_host_node_vnet(session, host.canonical_uuid, net.canonical_uuid)
    again = hva_network.prepare_host_node_vnet(session, host.canonical_uuid, net.canonical_uuid)
    assert first == again and len(first["broadcast_addr"]) == 17


def test_netfilter_group_separates_local_and_foreign_vnics(session):
    here, there = make.host_node(session), make.host_node(session)
    net = make.network(session, "10.21.0.0/24")
    group = make.security_group(session, rule="tcp:22,22,ip4:0.0.0.0")
    peer = make.security_group(session, rule="")
    session.flush()
    from collector.models import SecurityGroupReference

    session.add(SecurityGroupReference(referencer_id=group.id, referencee_id=peer.id))
    local = make.vif(session, make.instance(session, here), net, "10.21.0.2",
                            security_groups=[group])
    stopped = make.vif(session, make.instance(session, here, state="halted"), net,
                              "10.21.0.3", security_groups=[group])
    remote = make.vif(session, make.instance(session, there), net, "10.21.0.4",
                             security_groups=[group, peer])
    session.flush()
    session.expire_all()
    doc = hva_netfilter.get_netfilter_security_group(session, group.canonical_uuid, here.node_id)
    assert set(doc["local_vnics"]) == {local.canonical_uuid}
    assert set(doc["foreign_vnics"]) == {remote.canonical_uuid}
    assert stopped.canonical_uuid not in doc["local_vnics"] | doc["foreign_vnics"]
    assert doc["referencees"] == {peer.canonical_uuid: {
        remote.canonical_uuid: hva_netfilter.get_netfilter_vnic(session, remote.canonical_uuid)}}
    assert doc["rules"][0]["ip_fport"] == 22
    data = hva_netfilter.get_netfilter_data(session, here.node_id)
    assert set(data["security_groups"]) == {group.canonical_uuid}
    assert set(data["networks"]) == {net.canonical_uuid}
    assert hva_netfilter.get_netfilter_security_group(session, "sg-zzzzzzzz", "x") is None
    assert hva_netfilter.get_netfilter_vnic(session, "vif-zzzzzzzz") is None
    assert hva_netfilter.get_netfilter_vnic_with_node_id(session, local.canonical_uuid)[
        "node_id"] == here.node_id
    with pytest.raises(InvalidArgument):
        hva_netfilter.get_netfilter_vnic(session, "sg-zzzzzzzz")


def test_external_monitor_targets_skip_timed_out_and_unschedulable_hosts(session):
    online = make.host_node(session)
    offline = make.host_node(session, online=False)
    timing_out = make.host_node(session, online=False)
    make.node_state(session, timing_out.node_id, "timeout")
    disabled = make.host_node(session, scheduling_enabled=False)
    targets = set(monitoring.get_external_monitor_target_host_nodes(session))
    assert {online.canonical_uuid, offline.canonical_uuid} <= targets
    assert not {timing_out.canonical_uuid, disabled.canonical_uuid} & targets
    assert session.query(NodeState).filter_by(node_id=timing_out.node_id).one().state == "timeout"


def test_monitor_data_and_host_switch(session):
    host, other = make.host_node(session), make.host_node(session)
    inst = make.running_instance(session, host)
    make.instance(session, host, state="stopped")
    data = monitoring.get_resource_monitor_data(session, host.node_id)
    assert [i["uuid"] for i in data] == [inst.canonical_uuid]
    assert data[0]["vif"][0]["ipv4"] == {"address": "10.0.0.10", "nat_address": None}
    assert monitoring.get_resource_monitor_ids(session, host.node_id) == [inst.canonical_uuid]
    monitor = monitoring.get_instance_monitor_data(session, host.node_id)
    assert monitor[0]["hypervisor"] == "kvm" and monitor[0]["state"] == "running"
    assert host_nodes.switch_instance_host_node(session, inst.canonical_uuid, other.node_id)
    assert inst.host_node_id == other.id
    with pytest.raises(UnknownNodeID):
        monitoring.get_instance_monitor_data(session, "hva.nothere")
    with pytest.raises(UnknownNIC):
        hva_network.get_nic(session, "vif-zzzzzzzz")
    assert hva_network.get_nic(session, inst.network_vifs[0].canonical_uuid)["address"] == \
        "10.0.0.10"


def test_nat_and_released_leases_in_the_per_node_documents(session):
    host = make.host_node(session)
    net = make.network(session, "10.23.0.0/24", domain_name="cloud.local")
    outside = make.network(session, "198.51.100.0/24")
    group = make.security_group(session)
    inst = make.instance(session, host, hostname="web", account_id="a-acme0002")
    natted = make.vif(session, inst, net, None, security_groups=[group],
                             nat_network_id=outside.id)
    released = make.lease_ip(session, natted, net, "10.23.0.9")  # its first address
    released.deleted_at = utcnow()
    make.lease_ip(session, natted, net, "10.23.0.10")
    make.lease_ip(session, natted, outside, "198.51.100.7")
    gone = make.vif(session, inst, net, "10.23.0.11", security_groups=[group],
                           device_index=1)
    gone.deleted_at = utcnow()
    session.flush()

    vnic = hva_netfilter.get_netfilter_vnic(session, natted.canonical_uuid)
    assert (vnic["address"], vnic["nat_ip_lease"]) == ("10.23.0.10", "198.51.100.7")
    assert vnic["security_groups"] == [group.canonical_uuid]
    assert vnic["instance_uuid"] == inst.canonical_uuid and vnic["network_id"] == \
        net.canonical_uuid
    data = hva_netfilter.get_netfilter_data(session, host.node_id)
    assert list(data["security_groups"][group.canonical_uuid]["local_vnics"]) == [
        natted.canonical_uuid]  # the deleted vif is no member any more
    assert data["empty_vnics"] == {}
    monitor = monitoring.get_resource_monitor_data(session, host.node_id)
    assert [v["vif_id"] for v in monitor[0]["vif"]] == [natted.canonical_uuid]
    assert monitor[0]["vif"][0]["ipv4"] == {"address": "10.23.0.10",
                                            "nat_address": "198.51.100.7"}
    segment = hva_network.get_dhcp_conf(session, net.canonical_uuid)[net.canonical_uuid]
    assert segment["addr2host"] == [{"hostname": "web.acme0002.cloud.local",
                                     "ipaddr": "198.51.100.7"}]  # named by its outside address
    assert segment["mac2addr"] == [{"mac_addr": natted.pretty_mac_addr(), "ipaddr": "10.23.0.10"}]
