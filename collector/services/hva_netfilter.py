"""``hva-collector`` methods the hypervisor's netfilter cache is built from.

get_security_groups_of_vnic(vnic_uuid) -> [security group document]
get_referencers_of_security_group(group_id), get_referencees_of_security_group(group_id)
    -> {group id: {vif id: vif netfilter document}}
get_rules_of_security_group(group_id) -> [parsed rule]
get_netfilter_security_group(group_id, node_id) -> group netfilter document, or null
get_netfilter_vnic(vnic_id) -> vif netfilter document, or null
get_netfilter_vnic_with_node_id(vnic_id) -> {vnic, node_id (null when not on a host)}, or null
get_netfilter_network(network_id) -> network netfilter document, or null
get_netfilter_data(node_id) -> {empty_vnics, security_groups, networks} of the vifs of
    running instances on the node, in a fixed number of queries
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from collector.db import EAGER_CHUNK
from collector.documents.netfilter import (
    VIF_NETFILTER_LOADS,
    load_groups,
    network_netfilter_document,
    references_document,
    security_group_hash,
    security_group_netfilter_document,
)
from collector.documents.resources import NETWORK_LOADS, vif_netfilter_document
from collector.models import HostNode, Instance, Network, NetworkVif, SecurityGroup
from collector.security_group_rules import parse_rules


def get_security_groups_of_vnic(session: Session, vnic_uuid: str) -> list[dict[str, Any]]:
    vif = NetworkVif.by_cuuid(session, vnic_uuid)
    return [security_group_hash(g) for g in vif.security_groups]


def _group(session: Session, group_id: str) -> SecurityGroup:
    group = SecurityGroup.by_cuuid(session, group_id)
    return load_groups(session, [group.id])[0]


def get_referencers_of_security_group(session: Session, group_id: str) -> dict[str, Any]:
    return references_document(_group(session, group_id).referencers)


def get_referencees_of_security_group(session: Session, group_id: str) -> dict[str, Any]:
    return references_document(_group(session, group_id).referencees)


def get_rules_of_security_group(session: Session, group_id: str) -> list[dict[str, Any]]:
    return parse_rules(SecurityGroup.by_cuuid(session, group_id).rule)


def get_netfilter_security_group(session: Session, group_id: str,
                                 node_id: str) -> dict[str, Any] | None:
    found = SecurityGroup.find_cuuid(session, group_id)
    if found is None:
        return None
    return security_group_netfilter_document(load_groups(session, [found.id])[0], node_id)


def _vif(session: Session, vnic_id: str) -> NetworkVif | None:
    found = NetworkVif.find_cuuid(session, vnic_id)
    if found is None:
        return None
    return session.scalars(select(NetworkVif).where(NetworkVif.id == found.id)
                           .options(*VIF_NETFILTER_LOADS)).one()


def get_netfilter_vnic(session: Session, vnic_id: str) -> dict[str, Any] | None:
    vif = _vif(session, vnic_id)
    return vif_netfilter_document(vif) if vif else None


def get_netfilter_vnic_with_node_id(session: Session, vnic_id: str) -> dict[str, Any] | None:
    vif = _vif(session, vnic_id)
    if vif is None:
        return None
    host = vif.instance.host_node if vif.instance else None
    return {"vnic": vif_netfilter_document(vif), "node_id": host.node_id if host else None}


def get_netfilter_network(session: Session, network_id: str) -> dict[str, Any] | None:
    found = Network.find_cuuid(session, network_id)
    if found is None:
        return None
    net = session.scalars(select(Network).where(Network.id == found.id)
                          .options(*NETWORK_LOADS)).one()
    return network_netfilter_document(net)


def get_netfilter_data(session: Session, node_id: str) -> dict[str, Any]:
    local = list(session.scalars(
        select(NetworkVif).join(Instance, NetworkVif.instance_id == Instance.id)
        .join(HostNode, Instance.host_node_id == HostNode.id)
        .where(HostNode.node_id == node_id, Instance.state == "running",
               NetworkVif.network_id.is_not(None), NetworkVif.deleted_at.is_(None))
        .order_by(NetworkVif.id)
        .options(*VIF_NETFILTER_LOADS,
                 selectinload(NetworkVif.network, chunksize=EAGER_CHUNK).options(*NETWORK_LOADS))))
    group_ids = sorted({g.id for v in local for g in v.security_groups})
    groups = load_groups(session, group_ids)
    networks = {v.network.canonical_uuid: v.network for v in local}
    return {
        "empty_vnics": {v.canonical_uuid: vif_netfilter_document(v) for v in local
                        if not v.security_groups},
        "security_groups": {g.canonical_uuid: security_group_netfilter_document(g, node_id)
                            for g in groups},
        "networks": {k: network_netfilter_document(n) for k, n in networks.items()},
    }
