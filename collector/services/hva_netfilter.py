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
from sqlalchemy.orm import Session

from collector.documents.netfilter import (
    NetfilterGraph,
    VifFacts,
    load_vifs,
    local_vif_ids,
    network_netfilter_document,
    security_group_hash,
)
from collector.documents.resources import NETWORK_LOADS
from collector.models import Network, NetworkVif, SecurityGroup
from collector.security_group_rules import parse_rules


def get_security_groups_of_vnic(session: Session, vnic_uuid: str) -> list[dict[str, Any]]:
    vif = NetworkVif.by_cuuid(session, vnic_uuid)
    return [security_group_hash(g) for g in vif.security_groups]


def _graph_of(session: Session, group_id: str) -> tuple[NetfilterGraph, int]:
    group = SecurityGroup.by_cuuid(session, group_id)
    return NetfilterGraph.load(session, [group.id]), group.id


def get_referencers_of_security_group(session: Session, group_id: str) -> dict[str, Any]:
    graph, pk = _graph_of(session, group_id)
    return graph.referencers_document(pk)


def get_referencees_of_security_group(session: Session, group_id: str) -> dict[str, Any]:
    graph, pk = _graph_of(session, group_id)
    return graph.referencees_document(pk)


def get_rules_of_security_group(session: Session, group_id: str) -> list[dict[str, Any]]:
    return parse_rules(SecurityGroup.by_cuuid(session, group_id).rule)


def get_netfilter_security_group(session: Session, group_id: str,
                                 node_id: str) -> dict[str, Any] | None:
    found = SecurityGroup.find_cuuid(session, group_id)
    if found is None:
        return None
    return NetfilterGraph.load(session, [found.id]).security_group_document(found.id, node_id)


def _vif_facts(session: Session, vnic_id: str) -> VifFacts | None:
    found = NetworkVif.find_cuuid(session, vnic_id)
    return load_vifs(session, [found.id])[found.id] if found is not None else None


def get_netfilter_vnic(session: Session, vnic_id: str) -> dict[str, Any] | None:
    facts = _vif_facts(session, vnic_id)
    return facts.document if facts else None


def get_netfilter_vnic_with_node_id(session: Session, vnic_id: str) -> dict[str, Any] | None:
    facts = _vif_facts(session, vnic_id)
    if facts is None:
        return None
    return {"vnic": facts.document, "node_id": facts.node_id}


def _networks(session: Session, network_ids: set[int]) -> list[Network]:
    if not network_ids:
        return []
    return list(session.scalars(select(Network).where(Network.id.in_(network_ids))
                                .order_by(Network.id).options(*NETWORK_LOADS)))


def get_netfilter_network(session: Session, network_id: str) -> dict[str, Any] | None:
    found = Network.find_cuuid(session, network_id)
    if found is None:
        return None
    return network_netfilter_document(_networks(session, {found.id})[0])


def get_netfilter_data(session: Session, node_id: str) -> dict[str, Any]:
    local = list(session.execute(local_vif_ids(node_id)))
    vifs = load_vifs(session, [vif_id for vif_id, _ in local])
    group_ids = {g for vif_id, _ in local for g in vifs[vif_id].group_ids}
    graph = NetfilterGraph.load(session, group_ids, known_vifs=vifs)
    return {
        "empty_vnics": {vifs[v].document["uuid"]: vifs[v].document for v, _ in local
                        if not vifs[v].group_ids},
        "security_groups": {graph.groups[g].canonical_uuid:
                            graph.security_group_document(g, node_id) for g in sorted(group_ids)},
        "networks": {n.canonical_uuid: network_netfilter_document(n)
                     for n in _networks(session, {net for _, net in local})},
    }
