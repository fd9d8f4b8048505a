"""``hva-collector`` methods about networks, hosts and instance monitoring.

get_network(network_id) -> network document
get_nic(nic_uuid) -> the document of any object by canonical id (a vif's for ``vif-``)
get_networks() -> [network document] of every network
get_host_nodes_index() -> [host node id]
get_host_node(host_node_uuid) -> host API document (no node_id; status added)
prepare_host_node_vnet(host_node_uuid, network_uuid) -> the host's vnet on that network,
    created once (a unique index makes concurrent calls safe)
get_dhcp_conf(network_name) -> {network id: dhcp segment} for a network or a network group
get_instance_monitor_data(node_id) -> instances the host's monitor watches
get_resource_monitor_data(node_id), get_resource_monitor_ids(node_id)
switch_instance_host_node(instance_uuid, dest_node_id) -> true
get_external_monitor_target_host_nodes() -> ids of schedulable hosts online or offline
    (hosts timing out are left to settle, as in the original)
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from collector import ids
from collector.db import EAGER_CHUNK
from collector.documents.common import taggable_hash
from collector.documents.resources import (
    NETWORK_LOADS,
    Preloaded,
    host_node_api_document,
    network_hash,
    vif_hash,
)
from collector.documents.rows import AliveLeases, chunked_rows
from collector.errors import InvalidStateTransition, UnknownNetworkID, UnknownNIC
from collector.models import (
    ALLOC_AUTO,
    HostNode,
    HostNodeVnet,
    Instance,
    MacLease,
    Network,
    NetworkGroup,
    NetworkVif,
    NetworkVifIpLease,
    NodeState,
    TagMapping,
    find_taggable,
)
from collector.models.networks import ipv4_to_s, pretty_mac
from collector.scheduling import capacity

MAC_VENDOR = 0x525400

_VIF_LOADS = (
    selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK), selectinload(NetworkVif.security_groups, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.monitors, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.instance, chunksize=EAGER_CHUNK).selectinload(Instance.host_node, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.network, chunksize=EAGER_CHUNK).options(*NETWORK_LOADS),
)


def _networks_doc(session: Session, networks: list[Network]) -> list[dict[str, Any]]:
    pre = Preloaded.load(session, network_ids={n.id for n in networks})
    return [network_hash(n, pre) for n in networks]


def get_network(session: Session, network_id: str) -> dict[str, Any]:
    net = Network.by_cuuid(session, network_id)
    return _networks_doc(session, [net])[0]


def get_networks(session: Session) -> list[dict[str, Any]]:
    nets = list(session.scalars(select(Network).order_by(Network.id).options(*NETWORK_LOADS)))
    return _networks_doc(session, nets)


def get_nic(session: Session, nic_uuid: str) -> dict[str, Any]:
    row = find_taggable(session, nic_uuid)
    if row is None:
        raise UnknownNIC(f"unknown id '{nic_uuid}'")
    if isinstance(row, NetworkVif):
        vif = session.scalars(select(NetworkVif).where(NetworkVif.id == row.id)
                              .options(*_VIF_LOADS)).one()
        return vif_hash(vif, Preloaded.load(session, network_ids={vif.network_id or 0}))
    return taggable_hash(row)


def get_host_nodes_index(session: Session) -> list[str]:
    return [f"hn-{u}" for u in session.scalars(select(HostNode.uuid).order_by(HostNode.id))]


def get_host_node(session: Session, host_node_uuid: str) -> dict[str, Any]:
    return host_node_api_document(HostNode.by_cuuid(session, host_node_uuid))


def _vnet_document(vnet: HostNodeVnet) -> dict[str, Any]:
    doc = vnet.column_values()
    doc["broadcast_addr"] = pretty_mac(vnet.broadcast_addr)
    return doc


def prepare_host_node_vnet(session: Session, host_node_uuid: str,
                           network_uuid: str) -> dict[str, Any]:
    host = HostNode.by_cuuid(session, host_node_uuid)
    net = Network.by_cuuid(session, network_uuid)
    existing = session.scalars(select(HostNodeVnet).where(
        HostNodeVnet.host_node_id == host.id, HostNodeVnet.network_id == net.id)).first()
    if existing is not None:
        return _vnet_document(existing)
    for _ in range(16):
        mac = (MAC_VENDOR << 24) | secrets.randbelow(0xFF_FFFF)
        try:
            with session.begin_nested():
                session.add(MacLease(mac_addr=mac))
                vnet = HostNodeVnet(host_node_id=host.id, network_id=net.id,
                                    broadcast_addr=f"{mac:012x}")
                session.add(vnet)
            return _vnet_document(vnet)
        except IntegrityError:
            existing = session.scalars(select(HostNodeVnet).where(
                HostNodeVnet.host_node_id == host.id, HostNodeVnet.network_id == net.id)).first()
            if existing is not None:  # another worker created it meanwhile
                return _vnet_document(existing)
    raise InvalidStateTransition("could not lease a free MAC address for the vnet")


def get_dhcp_conf(session: Session, network_name: str) -> dict[str, Any]:
    target = find_taggable(session, network_name)
    if isinstance(target, Network):
        networks = [target]
    elif isinstance(target, NetworkGroup):
        raws = [m.split("-", 1)[1] for m in session.scalars(
            select(TagMapping.uuid).where(TagMapping.tag_id == target.id)) if m.startswith("nw-")]
        networks = list(session.scalars(select(Network).where(Network.uuid.in_(raws))
                                        .order_by(Network.id)))
    else:
        raise UnknownNetworkID(f"unknown network name: {network_name!r}")
    leases = list(chunked_rows(session, [n.id for n in networks], lambda chunk: select(
        NetworkVifIpLease.network_id, NetworkVifIpLease.ipv4, NetworkVif.id.label("vif_id"),
        NetworkVif.mac_addr, NetworkVif.nat_network_id, Instance.hostname, Instance.account_id)
        .join(NetworkVif, NetworkVifIpLease.network_vif_id == NetworkVif.id)
        .join(Instance, NetworkVif.instance_id == Instance.id)
        .where(NetworkVifIpLease.network_id.in_(chunk), NetworkVifIpLease.deleted_at.is_(None),
               NetworkVifIpLease.alloc_type == ALLOC_AUTO, NetworkVif.deleted_at.is_(None))
        .order_by(NetworkVifIpLease.ipv4, NetworkVifIpLease.id)))
    nat = AliveLeases(session, {row.vif_id for row in leases if row.nat_network_id})
    by_network: dict[int, list[Row]] = {n.id: [] for n in networks}
    for row in leases:
        by_network[row.network_id].append(row)
    return {n.canonical_uuid: _dhcp_segment(n, by_network[n.id], nat) for n in networks}


def _dhcp_segment(net: Network, leases: list[Row], nat: AliveLeases) -> dict[str, Any]:
    """The segment of one network; hosts behind NAT are named by their outside address."""
    block = net.ipv4
    segment = {
        "uuid": net.canonical_uuid, "ipv4_first": str(block.network_address + 1),
        "ipv4_last": str(block.broadcast_address - 1), "ipv4_gw": net.ipv4_gw,
        "netmask": str(block.netmask), "prefix": net.prefix_len, "dns_server": net.dns_server,
        "domain_name": net.domain_name, "metadata_server": net.metadata_server,
        "mac2addr": [], "addr2host": [],
    }
    for row in leases:
        address = ipv4_to_s(row.ipv4)
        segment["mac2addr"].append({"mac_addr": pretty_mac(row.mac_addr), "ipaddr": address})
        account = (row.account_id or "").split("-", 1)[-1]
        segment["addr2host"].append({
            "hostname": f"{row.hostname}.{account}.{net.domain_name}",
            "ipaddr": nat.first_in(row.vif_id, row.nat_network_id) or address,
        })
    return segment


def get_instance_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    host = HostNode.by_node_id(session, node_id)
    rows = session.scalars(select(Instance).where(
        Instance.host_node_id == host.id,
        Instance.state.in_(("running", "halting", "shuttingdown"))).order_by(Instance.id))
    return [{"uuid": i.canonical_uuid, "hypervisor": host.hypervisor, "status": i.status,
             "state": i.state, **{k: v for k, v in i.column_values().items()
                                  if k in ("created_at", "updated_at")}} for i in rows]


MONITORED_STATES = ("starting", "running", "halting", "shuttingdown")


def _monitored(session: Session, node_id: str) -> list[Row]:
    host = HostNode.by_node_id(session, node_id)
    return list(session.execute(select(Instance.id, Instance.uuid, Instance.status,
                                       Instance.state).where(
        Instance.host_node_id == host.id, Instance.state.in_(MONITORED_STATES))
        .order_by(Instance.id)))


def get_resource_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    instances = _monitored(session, node_id)
    vifs: dict[int, list[Row]] = defaultdict(list)
    for row in chunked_rows(session, [i.id for i in instances], lambda chunk: select(
            NetworkVif.id, NetworkVif.uuid, NetworkVif.instance_id, NetworkVif.network_id,
            NetworkVif.nat_network_id, Network.uuid.label("net_uuid"))
            .outerjoin(Network, Network.id == NetworkVif.network_id)
            .where(NetworkVif.instance_id.in_(chunk), NetworkVif.deleted_at.is_(None))
            .order_by(NetworkVif.device_index, NetworkVif.id)):
        vifs[row.instance_id].append(row)
    leases = AliveLeases(session, [v.id for rows in vifs.values() for v in rows])
    out = []
    for inst in instances:
        entries = []
        for vif in vifs.get(inst.id, ()):
            entry: dict[str, Any] = {
                "vif_id": ids.canonical(NetworkVif.prefix, vif.uuid),
                "network_id": ids.canonical(Network.prefix, vif.net_uuid) if vif.net_uuid
                else None}
            address = leases.first_in(vif.id, vif.network_id)
            if address is not None:
                entry["ipv4"] = {"address": address,
                                 "nat_address": leases.first_in(vif.id, vif.nat_network_id)}
            entries.append(entry)
        out.append({"uuid": ids.canonical(Instance.prefix, inst.uuid), "status": inst.status,
                    "state": inst.state, "vif": entries})
    return out


def get_resource_monitor_ids(session: Session, node_id: str) -> list[str]:
    return [ids.canonical(Instance.prefix, i.uuid) for i in _monitored(session, node_id)]


def switch_instance_host_node(session: Session, instance_uuid: str, dest_node_id: str) -> bool:
    inst = Instance.by_cuuid(session, instance_uuid, for_update=True)
    host = HostNode.by_node_id(session, dest_node_id)
    if inst.terminated_at is not None:
        raise InvalidStateTransition(f"{instance_uuid} is terminated: it cannot move")
    capacity.move_host(session, inst, host.id)  # the claim moves with it (forced: it moved)
    inst.host_node_id = host.id
    return True


def get_external_monitor_target_host_nodes(session: Session) -> list[str]:
    rows = session.execute(
        select(HostNode.uuid, NodeState.state)
        .outerjoin(NodeState, NodeState.node_id == HostNode.node_id)
        .where(HostNode.scheduling_enabled.is_(True)).order_by(HostNode.id))
    return [f"hn-{u}" for u, state in rows if state in (None, "online", "offline")]


