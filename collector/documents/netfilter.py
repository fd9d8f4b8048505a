"""Netfilter documents: what an hva builds its iptables/ebtables model from.

A node's document names every vif of its security groups, of the groups they reference
and of the groups referencing them: thousands of vifs, each repeated in several places.
``NetfilterGraph`` reads exactly the columns the documents need with plain (Core) queries,
a fixed number however many vifs and groups there are, and builds each vif's document
once: hydrating ORM objects for this was most of the call's time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from collector import ids
from collector.documents.common import taggable_hash
from collector.documents.rows import AliveLeases, chunked_rows
from collector.models import (
    HostNode,
    Instance,
    Network,
    NetworkVif,
    NetworkVifSecurityGroup,
    SecurityGroup,
    SecurityGroupReference,
)
from collector.security_group_rules import parse_rules

LOCAL_INSTANCE_STATES = ("running", "initializing")


@dataclass(slots=True)
class VifFacts:
    """One vif: its netfilter document and where its instance runs."""

    document: dict[str, Any]
    group_ids: list[int]  # its security groups, by id
    deleted: bool
    node_id: str | None  # the host node of its instance
    instance_state: str | None
    instance_alive: bool

    def is_local_to(self, node_id: str) -> bool:
        return self.node_id is not None and self.node_id == node_id and self.instance_alive


def load_vifs(session: Session, vif_ids: Iterable[int]) -> dict[int, VifFacts]:
    """Facts of those vifs (deleted ones included), keyed by primary key."""
    vif_ids = set(vif_ids)
    if not vif_ids:
        return {}
    leases = AliveLeases(session, vif_ids)
    groups: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for vif_id, group_id, group_uuid in chunked_rows(session, vif_ids, lambda chunk: select(
            NetworkVifSecurityGroup.network_vif_id, SecurityGroup.id, SecurityGroup.uuid)
            .join(SecurityGroup, SecurityGroup.id == NetworkVifSecurityGroup.security_group_id)
            .where(NetworkVifSecurityGroup.network_vif_id.in_(chunk))
            .order_by(SecurityGroup.id)):
        groups[vif_id].append((group_id, ids.canonical(SecurityGroup.prefix, group_uuid)))

    out: dict[int, VifFacts] = {}
    for row in chunked_rows(session, vif_ids, lambda chunk: select(
            NetworkVif.id, NetworkVif.uuid, NetworkVif.mac_addr, NetworkVif.network_id,
            NetworkVif.nat_network_id, NetworkVif.deleted_at.is_not(None).label("deleted"),
            Instance.uuid.label("inst_uuid"), Instance.state,
            Instance.terminated_at.is_(None).label("inst_alive"), HostNode.node_id,
            Network.uuid.label("net_uuid"))
            .outerjoin(Instance, Instance.id == NetworkVif.instance_id)
            .outerjoin(HostNode, HostNode.id == Instance.host_node_id)
            .outerjoin(Network, Network.id == NetworkVif.network_id)
            .where(NetworkVif.id.in_(chunk))):
        has_instance = row.inst_uuid is not None
        out[row.id] = VifFacts(
            document={
                "uuid": ids.canonical(NetworkVif.prefix, row.uuid), "mac_addr": row.mac_addr,
                "address": leases.first_in(row.id, row.network_id),
                "nat_ip_lease": leases.first_in(row.id, row.nat_network_id),
                "instance_uuid": ids.canonical(Instance.prefix, row.inst_uuid)
                if has_instance else None,
                "network_id": ids.canonical(Network.prefix, row.net_uuid)
                if row.net_uuid is not None else None,
                "security_groups": [name for _, name in groups.get(row.id, ())],
            },
            group_ids=[group_id for group_id, _ in groups.get(row.id, ())],
            deleted=bool(row.deleted), node_id=row.node_id,
            instance_state=row.state if has_instance else None,
            instance_alive=has_instance and bool(row.inst_alive))
    return out


@dataclass(slots=True)
class GroupFacts:
    id: int
    canonical_uuid: str
    rule: str | None
    member_ids: list[int] = field(default_factory=list)  # vifs, by id
    referencee_ids: list[int] = field(default_factory=list)  # groups this one references
    referencer_ids: list[int] = field(default_factory=list)  # groups referencing this one


@dataclass
class NetfilterGraph:
    """Security groups with their members and their references' members."""

    groups: dict[int, GroupFacts]
    vifs: dict[int, VifFacts]

    @classmethod
    def load(cls, session: Session, group_ids: Iterable[int],
             known_vifs: dict[int, VifFacts] | None = None) -> NetfilterGraph:
        """The groups, the groups they reference or are referenced by, and all their vifs
        (``known_vifs`` are not read again)."""
        wanted = set(group_ids)
        if not wanted:
            return cls({}, {})
        references = list(chunked_rows(session, wanted, lambda chunk: select(
            SecurityGroupReference.referencer_id, SecurityGroupReference.referencee_id)
            .where(or_(SecurityGroupReference.referencer_id.in_(chunk),
                       SecurityGroupReference.referencee_id.in_(chunk)))))
        every = wanted | {g for ref in references for g in ref}
        groups = {row.id: GroupFacts(row.id, ids.canonical(SecurityGroup.prefix, row.uuid),
                                     row.rule)
                  for row in chunked_rows(session, every, lambda chunk: select(
                      SecurityGroup.id, SecurityGroup.uuid, SecurityGroup.rule)
                      .where(SecurityGroup.id.in_(chunk)))}
        # Sorted pairs leave both id lists in ascending order, as the ORM relations were.
        for referencer, referencee in sorted(references):
            if referencer in groups and referencee in groups:
                groups[referencer].referencee_ids.append(referencee)
                groups[referencee].referencer_ids.append(referencer)
        for group_id, vif_id in chunked_rows(session, groups, lambda chunk: select(
                NetworkVifSecurityGroup.security_group_id, NetworkVifSecurityGroup.network_vif_id)
                .where(NetworkVifSecurityGroup.security_group_id.in_(chunk))
                .order_by(NetworkVifSecurityGroup.network_vif_id)):
            groups[group_id].member_ids.append(vif_id)
        known = known_vifs or {}
        vifs = {**known, **load_vifs(session, {v for g in groups.values() for v in g.member_ids
                                               if v not in known})}
        return cls(groups, vifs)

    def members_document(self, group_id: int) -> dict[str, dict[str, Any]]:
        found = (self.vifs.get(v) for v in self.groups[group_id].member_ids)
        return {f.document["uuid"]: f.document for f in found if f is not None and not f.deleted}

    def references_document(self, group_ids: list[int]) -> dict[str, dict[str, Any]]:
        return {self.groups[g].canonical_uuid: self.members_document(g) for g in group_ids}

    def referencers_document(self, group_id: int) -> dict[str, dict[str, Any]]:
        return self.references_document(self.groups[group_id].referencer_ids)

    def referencees_document(self, group_id: int) -> dict[str, dict[str, Any]]:
        return self.references_document(self.groups[group_id].referencee_ids)

    def security_group_document(self, group_id: int, node_id: str) -> dict[str, Any]:
        """Members split into this node's (running or starting) vifs and other nodes' vifs."""
        group = self.groups[group_id]
        local, foreign = {}, {}
        for vif_id in group.member_ids:
            facts = self.vifs.get(vif_id)
            if facts is None or facts.deleted:
                continue
            if not facts.is_local_to(node_id):
                foreign[facts.document["uuid"]] = facts.document
            elif facts.instance_state in LOCAL_INSTANCE_STATES:
                local[facts.document["uuid"]] = facts.document
        return {"uuid": group.canonical_uuid, "rules": parse_rules(group.rule),
                "local_vnics": local, "foreign_vnics": foreign,
                "referencees": self.referencees_document(group_id),
                "referencers": self.referencers_document(group_id)}


def local_vif_ids(node_id: str) -> Select:
    """Alive vifs with a network, of the running instances on the node, by id."""
    return (select(NetworkVif.id, NetworkVif.network_id)
            .join(Instance, NetworkVif.instance_id == Instance.id)
            .join(HostNode, Instance.host_node_id == HostNode.id)
            .where(HostNode.node_id == node_id, Instance.state == "running",
                   NetworkVif.network_id.is_not(None), NetworkVif.deleted_at.is_(None))
            .order_by(NetworkVif.id))


def security_group_hash(group: SecurityGroup, labels: list | None = None) -> dict[str, Any]:
    doc = taggable_hash(group)
    doc["id"] = group.canonical_uuid
    doc["rule"] = group.rule or ""
    doc["rules"] = parse_rules(group.rule)
    doc["labels"] = labels or []
    return doc


def network_netfilter_document(net: Network) -> dict[str, Any]:
    dc = net.dc_network
    return {"uuid": net.canonical_uuid, "ipv4_gw": net.ipv4_gw, "prefix": net.prefix_len,
            "dns_server": net.dns_server, "dhcp_server": net.dhcp_server,
            "metadata_server": net.metadata_server,
            "metadata_server_port": net.metadata_server_port, "network_mode": net.network_mode,
            "dc_network": taggable_hash(dc) if dc is not None else None}
