"""Documents of nodes, images, backup objects, volumes, networks and vifs.

Builders read only what is already loaded; ``Preloaded`` carries the side tables that
are fetched in one query each (labels, backup objects, network services).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from collector.db import EAGER_CHUNK
from collector.documents.common import taggable_hash
from collector.models import (
    BackupObject,
    DcNetwork,
    HostNode,
    Image,
    Network,
    NetworkService,
    NetworkVif,
    ResourceLabel,
    StorageNode,
    Volume,
)
from collector.models.networks import pretty_mac

# Eager loads of what a network document reads (its DC network and that one's VLAN).
NETWORK_LOADS = (selectinload(Network.dc_network, chunksize=EAGER_CHUNK)
                 .selectinload(DcNetwork.vlan_lease, chunksize=EAGER_CHUNK),)


@dataclass
class Preloaded:
    labels: dict[str, list[ResourceLabel]] = field(default_factory=dict)
    backup_objects: dict[str, BackupObject] = field(default_factory=dict)
    services_by_network: dict[int, list[NetworkService]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, *, label_uuids: set[str] = frozenset(),
             backup_object_uuids: set[str] = frozenset(),
             network_ids: set[int] = frozenset()) -> Preloaded:
        out = cls()
        if label_uuids:
            rows = session.scalars(select(ResourceLabel).where(
                ResourceLabel.resource_uuid.in_(label_uuids)).order_by(ResourceLabel.id))
            grouped: dict[str, list[ResourceLabel]] = defaultdict(list)
            for row in rows:
                grouped[row.resource_uuid].append(row)
            out.labels = dict(grouped)
        raw = {u.split("-", 1)[1] for u in backup_object_uuids if u and u.startswith("bo-")}
        if raw:
            from sqlalchemy.orm import selectinload

            rows = session.scalars(select(BackupObject).where(BackupObject.uuid.in_(raw))
                                   .options(selectinload(BackupObject.backup_storage, chunksize=EAGER_CHUNK)))
            out.backup_objects = {bo.canonical_uuid: bo for bo in rows}
        if network_ids:
            from sqlalchemy.orm import selectinload

            rows = session.scalars(
                select(NetworkService).join(NetworkVif)
                .where(NetworkVif.network_id.in_(network_ids))
                .order_by(NetworkVif.id, NetworkService.id)
                .options(selectinload(NetworkService.network_vif, chunksize=EAGER_CHUNK).selectinload(
                    NetworkVif.ip_leases, chunksize=EAGER_CHUNK), selectinload(NetworkService.network_vif, chunksize=EAGER_CHUNK)
                    .selectinload(NetworkVif.instance, chunksize=EAGER_CHUNK)))
            services: dict[int, list[NetworkService]] = defaultdict(list)
            for svc in rows:
                services[svc.network_vif.network_id].append(svc)
            out.services_by_network = dict(services)
        return out

    def labels_of(self, cuuid: str) -> list[dict[str, Any]]:
        return [label.to_hash() for label in self.labels.get(cuuid, [])]


def host_node_hash(host: HostNode | None) -> dict[str, Any] | None:
    if host is None:
        return None
    return {**taggable_hash(host), "status": host.status}


def host_node_api_document(host: HostNode) -> dict[str, Any]:
    doc = host_node_hash(host)
    doc["id"] = host.canonical_uuid
    doc.pop("node_id", None)
    return doc


def storage_node_hash(node: StorageNode | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {**taggable_hash(node), "status": node.status}


def backup_object_hash(bo: BackupObject, pre: Preloaded | None = None) -> dict[str, Any]:
    doc = taggable_hash(bo)
    doc["labels"] = pre.labels_of(bo.canonical_uuid) if pre else []
    doc["backup_storage"] = taggable_hash(bo.backup_storage)
    return doc


def image_hash(img: Image, pre: Preloaded) -> dict[str, Any]:
    doc = taggable_hash(img)
    doc["labels"] = pre.labels_of(img.canonical_uuid)
    bo = pre.backup_objects.get(img.backup_object_id or "")
    if bo is not None:
        doc["backup_object"] = {**backup_object_hash(bo, pre), "uri": bo.uri}
    return doc


def volume_device_hash(vol: Volume, with_node: bool = True) -> dict[str, Any] | None:
    device = vol.volume_device
    if device is None:
        return None
    doc = device.column_values()
    if with_node and vol.volume_type in ("iscsi", "nfs"):
        node = storage_node_hash(device.storage_node)
        doc[f"{vol.volume_type}_storage_node"] = node
        doc["storage_node"] = node
    return doc


def volume_hash(vol: Volume, pre: Preloaded) -> dict[str, Any]:
    doc = taggable_hash(vol)
    doc["labels"] = pre.labels_of(vol.canonical_uuid)
    doc["is_local_volume"] = vol.is_local_volume
    device = vol.volume_device
    doc["volume_device"] = device.column_values() if device is not None else None
    return doc


def network_hash(net: Network | None, pre: Preloaded) -> dict[str, Any] | None:
    if net is None:
        return None
    doc = taggable_hash(net)
    doc["bandwidth_mark"] = net.id
    doc["description"] = net.description or ""
    doc["network_services"] = [network_service_hash(s) for s in
                               pre.services_by_network.get(net.id, [])]
    if net.dc_network is not None:
        dc = taggable_hash(net.dc_network)
        if net.dc_network.vlan_lease is not None:
            dc["vlan_lease"] = taggable_hash(net.dc_network.vlan_lease)
        doc["dc_network"] = dc
    return doc


def network_service_hash(svc: NetworkService) -> dict[str, Any]:
    v = svc.network_vif
    return {**svc.column_values(), "network_vif_uuid": v.canonical_uuid,
            "network_id": v.network_id, "address": direct_address(v),
            "nat_ip_lease": nat_address(v), "mac_addr": pretty_mac(v.mac_addr),
            "instance_uuid": v.instance.canonical_uuid if v.instance else None}


def direct_address(v: NetworkVif) -> str | None:
    """First alive lease in the vif's own network."""
    for lease in v.ip_leases:
        if lease.is_alive and lease.network_id == v.network_id:
            return lease.ipv4_s
    return None


def nat_address(v: NetworkVif) -> str | None:
    """First alive lease in the vif's NAT (outside) network."""
    if v.nat_network_id is None:
        return None
    for lease in v.ip_leases:
        if lease.is_alive and lease.network_id == v.nat_network_id:
            return lease.ipv4_s
    return None


def vif_hash(v: NetworkVif, pre: Preloaded) -> dict[str, Any]:
    doc = taggable_hash(v)
    inst = v.instance
    doc.update({
        "address": direct_address(v), "nat_ip_lease": nat_address(v),
        "instance_uuid": inst.canonical_uuid if inst else None,
        "host_node_id": inst.host_node.node_id if inst and inst.host_node else None,
        "network_id": v.network_id, "network": network_hash(v.network, pre),
        "security_groups": [g.canonical_uuid for g in v.security_groups],
        "network_vif_monitors": [taggable_hash(m) for m in v.monitors if m.is_alive],
    })
    return doc

