"""The instance: its document (``hva-collector.get_instance``) from columns, and the
instance with its rows loaded as objects, for the writers that change them (finalizing)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, union_all
from sqlalchemy.orm import Session, joinedload, selectinload

from collector import ids
from collector.db import EAGER_CHUNK
from collector.db.compiled import Batch, Query, Shape
from collector.documents import networks, volumes
from collector.models import (
    HostNode,
    Image,
    Instance,
    IscsiVolume,
    NetworkVif,
    NfsVolume,
    NodeState,
    SshKeyPair,
    Volume,
)

# What finalizing reads: volumes with their device and its storage node, the host, and the
# vifs with their leases and groups (released with them).
_FINALIZE_LOADS = (
    joinedload(Instance.host_node),
    selectinload(Instance.network_vifs, chunksize=EAGER_CHUNK).options(
        selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK),
        selectinload(NetworkVif.security_groups, chunksize=EAGER_CHUNK)),
    selectinload(Instance.volumes, chunksize=EAGER_CHUNK).options(
        joinedload(Volume.local_volume),
        joinedload(Volume.iscsi_volume).joinedload(IscsiVolume.storage_node),
        joinedload(Volume.nfs_volume).joinedload(NfsVolume.storage_node)),
)

# Built once: constructing these loader options costs more than running the query.
_INSTANCE_BY_UUID = (select(Instance).where(Instance.uuid == bindparam("raw"))
                     .options(*_FINALIZE_LOADS))


_LOCK_INSTANCE = select(Instance.id).where(Instance.uuid == bindparam("raw")).with_for_update()


def load_instance(session: Session, instance_id: object, *,
                  for_update: bool = False) -> Instance:
    """The instance (terminated included) with the rows finalizing changes loaded.

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


# The document, from columns: ten selects of the instance's rows, each found from the
# instance's uuid, answered together (one statement on PostgreSQL).
_RAW = bindparam("raw")
_INSTANCES, _IMAGES = Instance.__table__, Image.__table__
_SSH_KEYS, _HOSTS, _NODE_STATES = SshKeyPair.__table__, HostNode.__table__, NodeState.__table__
# The placement group is the API's (api.show_placement_group), not the original's document.
_INSTANCE, _IMAGE = Shape(Instance, omit=("placement_group_id",)), Shape(Image)
# The allocation ratios are the Collector's placement settings, not the original's host
# document: an agent has no use for them.
_SSH_KEY = Shape(SshKeyPair)
_HOST = Shape(HostNode, omit=("cpu_allocation_ratio_milli", "ram_allocation_ratio_milli"))
_IMAGE_AT = _INSTANCE.width
_SSH_AT = _IMAGE_AT + _IMAGE.width
_HOST_AT = _SSH_AT + _SSH_KEY.width
_STATE_AT = _HOST_AT + _HOST.width

_INSTANCE_ID = select(_INSTANCES.c.id).where(_INSTANCES.c.uuid == _RAW).scalar_subquery()
_OF_INSTANCE = networks.VIFS.c.instance_id == _INSTANCE_ID
_VIF_IDS = select(networks.VIFS.c.id).where(_OF_INSTANCE)
_VIF_NETWORK_IDS = select(networks.VIFS.c.network_id).where(_OF_INSTANCE)
_IMAGE_OF_INSTANCE = _INSTANCES.join(_IMAGES, _IMAGES.c.id == _INSTANCES.c.image_id)
_VOLUMES_OF_INSTANCE = _INSTANCES.join(volumes.VOLUMES,
                                       volumes.VOLUMES.c.instance_id == _INSTANCES.c.id)
_IMAGE_BO = volumes.backup_object_raw_id(_IMAGES.c.backup_object_id)
_VOLUME_BO = volumes.backup_object_raw_id(volumes.VOLUMES.c.backup_object_id)

_INSTANCE_BATCH = Batch(
    Query(select(*_INSTANCE.columns, *_IMAGE.columns, *_SSH_KEY.columns, *_HOST.columns,
                 _NODE_STATES.c.state.label("node_state"))
          .select_from(_INSTANCES.outerjoin(_IMAGES, _IMAGES.c.id == _INSTANCES.c.image_id)
                       .outerjoin(_SSH_KEYS, _SSH_KEYS.c.id == _INSTANCES.c.ssh_key_pair_id)
                       .outerjoin(_HOSTS, _HOSTS.c.id == _INSTANCES.c.host_node_id)
                       .outerjoin(_NODE_STATES, _NODE_STATES.c.node_id == _HOSTS.c.node_id))
          .where(_INSTANCES.c.uuid == _RAW)),
    # Labels of the instance, its image and its volumes (no others: as the original).
    volumes.labels_select(union_all(
        select(f"{Instance.prefix}-" + _INSTANCES.c.uuid).where(_INSTANCES.c.uuid == _RAW),
        select(f"{Image.prefix}-" + _IMAGES.c.uuid).select_from(_IMAGE_OF_INSTANCE)
        .where(_INSTANCES.c.uuid == _RAW),
        select(f"{Volume.prefix}-" + volumes.VOLUMES.c.uuid).select_from(_VOLUMES_OF_INSTANCE)
        .where(_INSTANCES.c.uuid == _RAW))),
    volumes.backup_objects_select(union_all(
        select(_IMAGE_BO[0]).select_from(_IMAGE_OF_INSTANCE)
        .where(_INSTANCES.c.uuid == _RAW, _IMAGE_BO[1]),
        select(_VOLUME_BO[0]).select_from(_VOLUMES_OF_INSTANCE)
        .where(_INSTANCES.c.uuid == _RAW, _VOLUME_BO[1]))),
    Query(select(*networks.VIF.columns).where(_OF_INSTANCE),
          order_by=(networks.VIFS.c.device_index, networks.VIFS.c.id)),
    networks.networks_select(networks.NETWORKS.c.id.in_(_VIF_NETWORK_IDS.union(
        select(networks.VIFS.c.nat_network_id).where(_OF_INSTANCE)))),
    networks.leases_select(_VIF_IDS.union_all(networks.service_vif_ids(_VIF_NETWORK_IDS))),
    networks.groups_select(_VIF_IDS),
    networks.monitors_select(_VIF_IDS),
    networks.services_select(_VIF_NETWORK_IDS),
    volumes.volumes_select(volumes.VOLUMES.c.instance_id == _INSTANCE_ID),
)


def instance_document(session: Session, instance_id: str) -> dict[str, Any]:
    """``hva-collector.get_instance``'s document (terminated instances included)."""
    params = {"raw": ids.raw_part(instance_id, Instance.prefix)}
    (instance_rows, label_rows, backup_rows, vif_rows, network_rows, lease_rows, group_rows,
     monitor_rows, service_rows, volume_rows) = _INSTANCE_BATCH.fetch(session, params)
    if not instance_rows:
        raise Instance.not_found(f"unknown id '{instance_id}'")
    row = instance_rows[0]
    labels = volumes.label_documents(label_rows)
    backups = volumes.BackupObjects(backup_rows)
    leases = networks.Leases(lease_rows)
    nets = networks.network_documents(network_rows,
                                      networks.service_documents(service_rows, leases))
    groups = networks.group_names(group_rows)
    monitors = networks.monitor_documents(monitor_rows)

    doc = _INSTANCE.document(row)
    doc["labels"] = labels.get(doc["uuid"], [])
    image = _IMAGE.document(row, _IMAGE_AT) if _IMAGE.present(row, _IMAGE_AT) else None
    if image is not None:
        image["labels"] = labels.get(image["uuid"], [])
        backup = backups.document(image["backup_object_id"], labels, with_uri=True)
        if backup is not None:
            image["backup_object"] = backup
    doc["image"] = image
    host = None
    if _HOST.present(row, _HOST_AT):
        host = _HOST.document(row, _HOST_AT)
        host["status"] = row[_STATE_AT] or "offline"
    doc["host_node"] = host
    node_id = host["node_id"] if host is not None else None

    nics, entries, ips, nat_ips = [], [], [], []
    for vif_row in vif_rows:
        nic = networks.VIF.document(vif_row)
        vif_id = nic["id"]
        networks.vif_document(nic, leases, instance_uuid=doc["uuid"], host_node_id=node_id,
                              network=nets.get(nic["network_id"]),
                              groups=groups.get(vif_id, []), monitors=monitors.get(vif_id, []))
        nics.append(nic)
        own, nat = leases.addresses(nic["id"], nic["network_id"])
        ips += own
        nat_ips += nat
        entry = {**nic, "vif_id": nic["uuid"]}
        if nic["address"] is not None:
            nat_network = nic["nat_network_id"]
            entry["ipv4"] = {"network": nic["network"], "address": nic["address"],
                             "nat_network": nets.get(nat_network) if nat_network else None,
                             "nat_address": nic["nat_ip_lease"]}
        entries.append(entry)
    doc["instance_nics"] = nics
    doc["ips"], doc["nat_ips"] = ips, nat_ips
    doc["vif"] = entries
    volume_docs = {}
    for volume_row in volume_rows:
        volume = volumes.volume_document(volume_row, labels)
        backup = backups.document(volume["backup_object_id"], labels)
        if backup is not None:
            volume["backup_object"] = backup
        volume_docs[volume["uuid"]] = volume
    doc["volume"] = volume_docs
    doc["ssh_key_data"] = _SSH_KEY.document(row, _SSH_AT) \
        if _SSH_KEY.present(row, _SSH_AT) else None
    return doc
