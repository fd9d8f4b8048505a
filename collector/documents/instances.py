"""The instance document (``hva-collector.get_instance``), in a bounded number of queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload, selectinload

from collector import ids
from collector.db import EAGER_CHUNK
from collector.documents.common import taggable_hash
from collector.documents.resources import (
    Preloaded,
    backup_object_hash,
    host_node_hash,
    image_hash,
    nat_address,
    network_hash,
    vif_hash,
    volume_device_hash,
    volume_hash,
)
from collector.models import (
    DcNetwork,
    HostNode,
    Instance,
    IscsiVolume,
    Network,
    NetworkVif,
    NfsVolume,
    StorageNode,
    Volume,
)

# Scalar relations are joined into their parent's query; collections are one query each.
_VIF_LOADS = (
    selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.security_groups, chunksize=EAGER_CHUNK),
    selectinload(NetworkVif.monitors, chunksize=EAGER_CHUNK),
    joinedload(NetworkVif.network).joinedload(Network.dc_network)
    .joinedload(DcNetwork.vlan_lease),
    joinedload(NetworkVif.nat_network),
)


def instance_loader_options() -> list:
    """Eager loads for everything the instance document reads."""
    return [
        joinedload(Instance.image),
        joinedload(Instance.ssh_key_pair),
        joinedload(Instance.host_node).joinedload(HostNode.node),
        selectinload(Instance.network_vifs, chunksize=EAGER_CHUNK).options(*_VIF_LOADS),
        selectinload(Instance.volumes, chunksize=EAGER_CHUNK).options(
            joinedload(Volume.local_volume),
            joinedload(Volume.iscsi_volume).joinedload(IscsiVolume.storage_node)
            .joinedload(StorageNode.node),
            joinedload(Volume.nfs_volume).joinedload(NfsVolume.storage_node)
            .joinedload(StorageNode.node),
        ),
    ]


# Built once: constructing these loader options costs more than running the query.
_INSTANCE_BY_UUID = (select(Instance).where(Instance.uuid == bindparam("raw"))
                     .options(*instance_loader_options()))


_LOCK_INSTANCE = select(Instance.id).where(Instance.uuid == bindparam("raw")).with_for_update()


def load_instance(session: Session, instance_id: object, *,
                  for_update: bool = False) -> Instance:
    """The instance (terminated included) with its whole document graph loaded.

    ``for_update``: a writer's load. The instance row is locked first (``SELECT ... FOR
    UPDATE``; SQLite's writer already holds the database), then the graph is read by new
    statements, so it reflects every transaction that held the lock before this one.
    """
    raw = ids.raw_part(instance_id, Instance.prefix)
    stmt = _INSTANCE_BY_UUID
    if for_update:
        if session.execute(_LOCK_INSTANCE, {"raw": raw}).first() is None:
            raise Instance.not_found(f"unknown id '{instance_id}'")
        stmt = stmt.execution_options(populate_existing=True)
    inst = session.scalars(stmt, {"raw": raw}).first()
    if inst is None:
        raise Instance.not_found(f"unknown id '{instance_id}'")
    return inst


def instance_document(session: Session, inst: Instance) -> dict[str, Any]:
    vifs = list(inst.network_vifs)
    volumes = list(inst.volumes)
    pre = Preloaded.load(
        session,
        label_uuids={inst.canonical_uuid, inst.image.canonical_uuid,
                     *(v.canonical_uuid for v in volumes)},
        backup_object_uuids={inst.image.backup_object_id or "",
                             *(v.backup_object_id or "" for v in volumes)},
        network_ids={v.network_id for v in vifs if v.network_id},
    )
    doc = taggable_hash(inst)
    doc["labels"] = pre.labels_of(inst.canonical_uuid)
    doc["image"] = image_hash(inst.image, pre)
    doc["host_node"] = host_node_hash(inst.host_node)
    nics = [vif_hash(v, pre) for v in vifs]
    doc["instance_nics"] = nics
    ips, nat_ips = [], []
    for v in vifs:
        for lease in v.ip_leases:
            (nat_ips if lease.network_id != v.network_id else ips).append(lease.ipv4_s)
    doc["ips"], doc["nat_ips"] = ips, nat_ips
    doc["vif"] = [_vif_entry(v, nic, pre) for v, nic in zip(vifs, nics, strict=True)]
    doc["volume"] = {v.canonical_uuid: _volume_entry(v, pre) for v in volumes}
    doc["ssh_key_data"] = taggable_hash(inst.ssh_key_pair) if inst.ssh_key_pair else None
    return doc


def _vif_entry(v: NetworkVif, nic: dict, pre: Preloaded) -> dict[str, Any]:
    entry = {**nic, "vif_id": v.canonical_uuid}
    if nic["address"] is not None:
        entry["ipv4"] = {
            "network": nic["network"], "address": nic["address"],
            "nat_network": network_hash(v.nat_network, pre) if v.nat_network else None,
            "nat_address": nat_address(v),
        }
    return entry


def _volume_entry(vol: Volume, pre: Preloaded) -> dict[str, Any]:
    doc = volume_hash(vol, pre)
    doc["volume_device"] = volume_device_hash(vol)
    bo = pre.backup_objects.get(vol.backup_object_id or "")
    if bo is not None:
        doc["backup_object"] = backup_object_hash(bo, pre)
    return doc
