"""``hva-collector`` methods about networks.

get_network(network_id) -> network document
get_nic(nic_uuid) -> the document of any object by canonical id (a vif's for ``vif-``)
get_networks() -> [network document] of every network
prepare_host_node_vnet(host_node_uuid, network_uuid) -> the host's vnet on that network,
    created once (a unique index makes concurrent calls safe)
get_dhcp_conf(network_name) -> {network id: dhcp segment} for a network or a network group
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector import ids
from collector.documents.common import taggable_hash
from collector.documents.networks import all_network_documents, network_document, nic_document
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
    TagMapping,
    find_taggable,
)
from collector.models.networks import ipv4_to_s, pretty_mac

MAC_VENDOR = 0x525400


def get_network(session: Session, network_id: str) -> dict[str, Any]:
    doc = network_document(session, network_id)
    if doc is None:
        raise Network.not_found(f"unknown id '{network_id}'")
    return doc


def get_networks(session: Session) -> list[dict[str, Any]]:
    return all_network_documents(session)


def get_nic(session: Session, nic_uuid: str) -> dict[str, Any]:
    prefix, _raw = ids.split(nic_uuid)
    if prefix == NetworkVif.prefix:
        doc = nic_document(session, nic_uuid)
    else:  # any other object by its id: rarely asked, read through the ORM
        row = find_taggable(session, nic_uuid)
        doc = taggable_hash(row) if row is not None else None
    if doc is None:
        raise UnknownNIC(f"unknown id '{nic_uuid}'")
    return doc


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
