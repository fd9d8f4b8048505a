"""Documents of nodes, images, backup objects and volumes built from ORM objects, for the
writers that answer with what they wrote and the rarely asked reads (the hot reads build
theirs from columns: ``networks``, ``volumes``, ``instances``).

Builders read only what is already loaded; ``Preloaded`` carries the side tables that
are fetched in one query each (labels, backup objects).
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
    NetworkVif,
    ResourceLabel,
    Volume,
)

# Eager loads of what a network document reads (its DC network and that one's VLAN).
NETWORK_LOADS = (selectinload(Network.dc_network, chunksize=EAGER_CHUNK)
                 .selectinload(DcNetwork.vlan_lease, chunksize=EAGER_CHUNK),)


@dataclass
class Preloaded:
    labels: dict[str, list[ResourceLabel]] = field(default_factory=dict)
    backup_objects: dict[str, BackupObject] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, *, label_uuids: set[str] = frozenset(),
             backup_object_uuids: set[str] = frozenset()) -> Preloaded:
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
            rows = session.scalars(select(BackupObject).where(BackupObject.uuid.in_(raw))
                                   .options(selectinload(BackupObject.backup_storage, chunksize=EAGER_CHUNK)))
            out.backup_objects = {bo.canonical_uuid: bo for bo in rows}
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


def volume_hash(vol: Volume, pre: Preloaded) -> dict[str, Any]:
    doc = taggable_hash(vol)
    doc["labels"] = pre.labels_of(vol.canonical_uuid)
    doc["is_local_volume"] = vol.is_local_volume
    device = vol.volume_device
    doc["volume_device"] = device.column_values() if device is not None else None
    return doc


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
