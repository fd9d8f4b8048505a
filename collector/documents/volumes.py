"""Volume, backup object and label documents from columns (``sta-collector.get_volume``
and the volumes and image of ``hva-collector.get_instance``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.db.compiled import Batch, Query, Shape
from collector.models import (
    ISCSI,
    LOCAL,
    NFS,
    BackupObject,
    BackupStorage,
    IscsiVolume,
    LocalVolume,
    NfsVolume,
    NodeState,
    ResourceLabel,
    StorageNode,
    Volume,
)

VOLUMES = Volume.__table__
LOCAL_VOLUMES = LocalVolume.__table__
ISCSI_VOLUMES = IscsiVolume.__table__
NFS_VOLUMES = NfsVolume.__table__
STORAGE_NODES = StorageNode.__table__
NODE_STATES = NodeState.__table__
BACKUP_OBJECTS = BackupObject.__table__
BACKUP_STORAGES = BackupStorage.__table__
LABELS = ResourceLabel.__table__

VOLUME = Shape(Volume)
DEVICES = {LOCAL: Shape(LocalVolume), ISCSI: Shape(IscsiVolume), NFS: Shape(NfsVolume)}
STORAGE_NODE = Shape(StorageNode)
BACKUP_OBJECT = Shape(BackupObject)
BACKUP_STORAGE = Shape(BackupStorage)
LABEL = Shape(ResourceLabel)

# Where each part of a volume row starts.
_DEVICE_AT: dict[str, int] = {}
_at = VOLUME.width
for _kind in (LOCAL, ISCSI, NFS):
    _DEVICE_AT[_kind] = _at
    _at += DEVICES[_kind].width
_NODE_AT = _at
_STATE_AT = _NODE_AT + STORAGE_NODE.width


def volumes_select(where: ColumnElement[bool]) -> Query:
    """Volumes with their device row of their kind, its storage node and that node's state,
    in id order."""
    node_id = case((VOLUMES.c.volume_type == ISCSI, ISCSI_VOLUMES.c.iscsi_storage_node_id),
                   (VOLUMES.c.volume_type == NFS, NFS_VOLUMES.c.nfs_storage_node_id))
    stmt = (select(*VOLUME.columns, *DEVICES[LOCAL].columns, *DEVICES[ISCSI].columns,
                   *DEVICES[NFS].columns, *STORAGE_NODE.columns,
                   NODE_STATES.c.state.label("node_state"))
            .select_from(VOLUMES
                         .outerjoin(LOCAL_VOLUMES, LOCAL_VOLUMES.c.id == VOLUMES.c.id)
                         .outerjoin(ISCSI_VOLUMES, ISCSI_VOLUMES.c.id == VOLUMES.c.id)
                         .outerjoin(NFS_VOLUMES, NFS_VOLUMES.c.id == VOLUMES.c.id)
                         .outerjoin(STORAGE_NODES, STORAGE_NODES.c.id == node_id)
                         .outerjoin(NODE_STATES, NODE_STATES.c.node_id == STORAGE_NODES.c.node_id))
            .where(where))
    return Query(stmt, order_by=(VOLUMES.c.id,))


def backup_objects_select(raw_ids: Select) -> Query:
    """Backup objects (by the id part of their uuid) with their backup storage."""
    return Query(select(*BACKUP_OBJECT.columns, *BACKUP_STORAGE.columns)
                 .select_from(BACKUP_OBJECTS.outerjoin(
                     BACKUP_STORAGES, BACKUP_STORAGES.c.id == BACKUP_OBJECTS.c.backup_storage_id))
                 .where(BACKUP_OBJECTS.c.uuid.in_(raw_ids)))


def backup_object_raw_id(column: ColumnElement[str]) -> tuple[ColumnElement, ColumnElement]:
    """The id part of a ``bo-...`` reference column, and the condition that it is one."""
    return func.substr(column, 4), func.substr(column, 1, 3) == f"{BackupObject.prefix}-"


def labels_select(resource_uuids: Select) -> Query:
    return Query(select(*LABEL.columns).where(LABELS.c.resource_uuid.in_(resource_uuids)),
                 order_by=(LABELS.c.id,))


def label_documents(rows: Iterable[Sequence[Any]]) -> dict[str, list[dict]]:
    """Canonical id -> its labels' documents."""
    out: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        doc = LABEL.document(row)
        out[doc["resource_uuid"]].append(doc)
    return out


class BackupObjects:
    """Backup objects by canonical id, with their storage; documents made on demand."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self.rows = {f"{BackupObject.prefix}-{row[BACKUP_OBJECT.uuid_index]}": row
                     for row in rows}

    def document(self, cuuid: str | None, labels: dict[str, list[dict]],
                 with_uri: bool = False) -> dict[str, Any] | None:
        row = self.rows.get(cuuid or "")
        if row is None:
            return None
        doc = BACKUP_OBJECT.document(row)
        doc["labels"] = labels.get(doc["uuid"], [])
        storage = BACKUP_STORAGE.document(row, BACKUP_OBJECT.width) \
            if BACKUP_STORAGE.present(row, BACKUP_OBJECT.width) else None
        doc["backup_storage"] = storage
        if with_uri:
            base = storage["base_uri"] if storage is not None else ""
            doc["uri"] = f"{base}{doc['object_key'] or ''}"
        return doc


def _storage_node(row: Sequence[Any]) -> dict[str, Any] | None:
    if not STORAGE_NODE.present(row, _NODE_AT):
        return None
    doc = STORAGE_NODE.document(row, _NODE_AT)
    doc["status"] = row[_STATE_AT] or "offline"
    return doc


def volume_document(row: Sequence[Any], labels: dict[str, list[dict]]) -> dict[str, Any]:
    """A volume's document with its device (and the device's storage node)."""
    doc = VOLUME.document(row)
    kind = doc["volume_type"]
    doc["labels"] = labels.get(doc["uuid"], [])
    doc["is_local_volume"] = kind == LOCAL
    shape = DEVICES.get(kind or "")
    device = None
    if shape is not None and shape.present(row, _DEVICE_AT[kind]):
        device = shape.document(row, _DEVICE_AT[kind])
        if kind in (ISCSI, NFS):
            node = _storage_node(row)
            device[f"{kind}_storage_node"] = node
            device["storage_node"] = node
    doc["volume_device"] = device
    return doc


_VOLUME_RAW = bindparam("raw")
_VOLUME_BACKUP_OBJECT = backup_object_raw_id(VOLUMES.c.backup_object_id)
_VOLUME = Batch(
    volumes_select(VOLUMES.c.uuid == _VOLUME_RAW),
    labels_select(select(f"{Volume.prefix}-" + VOLUMES.c.uuid).where(VOLUMES.c.uuid == _VOLUME_RAW)),
    backup_objects_select(select(_VOLUME_BACKUP_OBJECT[0]).where(
        and_(VOLUMES.c.uuid == _VOLUME_RAW, _VOLUME_BACKUP_OBJECT[1]))),
)


def get_volume_document(session: Session, volume_id: str) -> dict[str, Any] | None:
    """``sta-collector.get_volume``'s document, None when there is no such volume."""
    params = {"raw": ids.raw_part(volume_id, Volume.prefix)}
    volumes, label_rows, backup_rows = _VOLUME.fetch(session, params)
    if not volumes:
        return None
    labels = label_documents(label_rows)
    doc = volume_document(volumes[0], labels)
    doc["source_backup_object"] = BackupObjects(backup_rows).document(
        doc["backup_object_id"], labels)
    return doc
