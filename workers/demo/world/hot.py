"""The worlds the benchmarks read: a host with a few richly built instances (the hot RPCs'
arguments), and nodes of 1,000 or 5,000 vnics in 50 security groups, written in bulk."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sqlalchemy import insert

from collector.db import unit_of_work
from collector.models import (
    ISCSI,
    LOCAL,
    Instance,
    NetworkService,
    NetworkVif,
    NetworkVifIpLease,
    NetworkVifMonitor,
    NetworkVifSecurityGroup,
    ResourceLabel,
    SecurityGroupReference,
)
from collector.models.networks import ipv4_to_i
from workers.demo.world import make


@dataclass
class HotWorld:
    node_id: str
    instance: str  # get_instance's argument (a typical instance)
    instance_pk: int
    update_targets: list[str]  # one instance per caller, for update_instance
    volume: str
    vif: str
    network: str
    nodes: dict[int, tuple[str, str]] = field(default_factory=dict)  # vnics -> node, network


def seed_hot(url: str, callers: int = 8) -> HotWorld:
    with unit_of_work(url) as session:
        host = make.host_node(session, node_id="hva.bench")
        storage = make.storage_node(session, node_id="sta.bench-iscsi")
        inside = make.network(session, "10.20.0.0/24")
        outside = make.network(session, "172.20.0.0/24")
        group = make.security_group(session, rule="tcp:22,22,ip4:0.0.0.0")
        # A typical instance: a local boot volume, an iSCSI data volume, one vif behind NAT
        # in a security group, a label; its network has a metadata service.
        inst = make.instance(session, host)
        make.volume(session, inst, LOCAL, boot=True)
        data = make.volume(session, inst, ISCSI, node=storage, guest_device_name="vdb")
        vif = make.vif(session, inst, inside, ipv4="10.20.0.10", security_groups=[group],
                              nat_network_id=outside.id)
        make.lease_ip(session, vif, outside, "172.20.0.10")
        session.add_all([
            NetworkVifMonitor(network_vif_id=vif.id, title="http", params={"port": 80}),
            NetworkService(network_vif_id=vif.id, name="metadata", incoming_port=80),
            ResourceLabel(resource_uuid=inst.canonical_uuid, name="role", string_value="web"),
        ])
        others = [make.running_instance(session, host, storage=storage, net=inside,
                                               ipv4=f"10.20.0.{100 + n}")
                  for n in range(callers)]
        make.alarm(session, inst, "cpu.usage")
        session.flush()
        return HotWorld(
            node_id=host.node_id, instance=inst.canonical_uuid, instance_pk=inst.id,
            update_targets=[o.canonical_uuid for o in others], volume=data.canonical_uuid,
            vif=vif.canonical_uuid, network=inside.canonical_uuid)


def seed_node(url: str, vnics: int, second_octet: int, groups: int = 50) -> tuple[str, str]:
    """A host with ``vnics`` vnics (4 per running instance) on one /16 network, in
    ``groups`` security groups each referencing the next; one vnic in ten in no group.
    Returns the host's node id and the network's id."""
    macs = itertools.count(second_octet << 16)
    with unit_of_work(url) as session:
        host = make.host_node(session, node_id=f"hva.bench{vnics}")
        net = make.network(session, f"10.{second_octet}.0.0/16")
        image = make.image(session)
        sgs = [make.security_group(session, rule=f"tcp:{22 + i},{22 + i},ip4:0.0.0.0")
               for i in range(groups)]
        session.execute(insert(SecurityGroupReference), [
            {"referencer_id": a.id, "referencee_id": b.id} for a, b in zip(sgs, sgs[1:],
                                                                           strict=False)])
        instances = session.execute(insert(Instance).returning(Instance.id), [
            {"image_id": image.id, "host_node_id": host.id, "state": "running",
             "status": "online", "hostname": f"vm{n}", "account_id": "a-shpoolxx",
             "hypervisor": "kvm"} for n in range(vnics // 4)]).scalars().all()
        vif_ids = session.execute(insert(NetworkVif).returning(NetworkVif.id), [
            {"instance_id": instances[n // 4], "network_id": net.id,
             "mac_addr": f"{(0x525400 << 24) | next(macs):012x}", "device_index": n % 4}
            for n in range(len(instances) * 4)]).scalars().all()
        base = ipv4_to_i(f"10.{second_octet}.0.0")
        session.execute(insert(NetworkVifIpLease), [
            {"network_id": net.id, "network_vif_id": vif_id, "ipv4": base + 2 + n}
            for n, vif_id in enumerate(vif_ids)])
        session.execute(insert(NetworkVifSecurityGroup), [
            {"network_vif_id": vif_id, "security_group_id": sgs[n % groups].id}
            for n, vif_id in enumerate(vif_ids) if n % 10])
        return host.node_id, net.canonical_uuid
