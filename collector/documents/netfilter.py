"""Netfilter documents: what an hva builds its iptables/ebtables model from.

``NetfilterGraph`` loads security groups with their member vifs, referenced and
referencing groups and those groups' members in a fixed number of queries, however many
vifs and groups a node has.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from collector.db import EAGER_CHUNK
from collector.documents.common import taggable_hash
from collector.documents.resources import vif_netfilter_document
from collector.models import Instance, Network, NetworkVif, SecurityGroup
from collector.security_group_rules import parse_rules

VIF_NETFILTER_LOADS = (
    selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK), selectinload(NetworkVif.network, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.security_groups, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.instance, chunksize=EAGER_CHUNK).selectinload(Instance.host_node, chunksize=EAGER_CHUNK),
)


def _members():
    return selectinload(SecurityGroup.network_vifs, chunksize=EAGER_CHUNK).options(*VIF_NETFILTER_LOADS)


GROUP_LOADS = (
    _members(),
    selectinload(SecurityGroup.referencees, chunksize=EAGER_CHUNK).options(_members()),
    selectinload(SecurityGroup.referencers, chunksize=EAGER_CHUNK).options(_members()),
)


def load_groups(session: Session, group_ids: list[int]) -> list[SecurityGroup]:
    if not group_ids:
        return []
    return list(session.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(group_ids))
                                .order_by(SecurityGroup.id).options(*GROUP_LOADS)))


def security_group_hash(group: SecurityGroup, labels: list | None = None) -> dict[str, Any]:
    doc = taggable_hash(group)
    doc["id"] = group.canonical_uuid
    doc["rule"] = group.rule or ""
    doc["rules"] = parse_rules(group.rule)
    doc["labels"] = labels or []
    return doc


def members_documents(group: SecurityGroup) -> dict[str, dict[str, Any]]:
    return {v.canonical_uuid: vif_netfilter_document(v) for v in group.network_vifs
            if v.deleted_at is None}


def references_document(groups: list[SecurityGroup]) -> dict[str, dict[str, Any]]:
    return {g.canonical_uuid: members_documents(g) for g in groups}


def security_group_netfilter_document(group: SecurityGroup, node_id: str) -> dict[str, Any]:
    local, foreign = {}, {}
    for vif in group.network_vifs:
        if vif.deleted_at is not None:
            continue
        inst = vif.instance
        on_node = inst is not None and inst.host_node is not None and \
            inst.host_node.node_id == node_id and inst.terminated_at is None
        if on_node and inst.state in ("running", "initializing"):
            local[vif.canonical_uuid] = vif_netfilter_document(vif)
        elif not on_node:
            foreign[vif.canonical_uuid] = vif_netfilter_document(vif)
    return {"uuid": group.canonical_uuid, "rules": parse_rules(group.rule),
            "local_vnics": local, "foreign_vnics": foreign,
            "referencees": references_document(group.referencees),
            "referencers": references_document(group.referencers)}


def network_netfilter_document(net: Network) -> dict[str, Any]:
    dc = net.dc_network
    return {"uuid": net.canonical_uuid, "ipv4_gw": net.ipv4_gw, "prefix": net.prefix_len,
            "dns_server": net.dns_server, "dhcp_server": net.dhcp_server,
            "metadata_server": net.metadata_server,
            "metadata_server_port": net.metadata_server_port, "network_mode": net.network_mode,
            "dc_network": taggable_hash(dc) if dc is not None else None}

