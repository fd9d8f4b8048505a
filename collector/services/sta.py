"""``sta-collector``: what storage agents ask and report.

get_available_volumes(sta_node_id) -> [volume document] of the node's alive volumes on
    disk (available / attaching / attached / detaching); the original always crashed here
get_volume(volume_id) -> volume document + ``volume_device`` (with its storage node) +
    ``source_backup_object``
get_snapshot(snapshot_id), get_backup_object(backup_object_id) (+ ``backup_storage``,
    ``uri``), get_image(image_id)
update_volume(volume_id, data) -> None: through the volume state machine; a
    ``volume_device`` dict updates the device row; ``state: deleted`` soft-deletes
update_snapshot(snapshot_id, data), update_backup_object(backup_object_id, data) -> None:
    through their state machines; backup ``progress`` never goes down; ``available``
    forces progress 100
register_backup_object_transfer(node_id, bo_data) -> new backup object document
register_image_transfer(node_id, image_data, bo_data) -> {backup_object, image}
post_process_backup_image(image_id) -> None: the image becomes available once every
    backup object it lists is available
update_image(image_id, data) -> None (the sta agent calls it here; the original lacked it)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.documents.common import taggable_hash
from collector.documents.resources import (
    Preloaded,
    backup_object_hash,
    image_hash,
    volume_hash,
)
from collector.documents.volumes import get_volume_document
from collector.errors import (
    InvalidArgument,
    UnknownBackupStorage,
    UnknownStorageNodeID,
    ValidationFailed,
)
from collector.fields import NULL, cloned_fields
from collector.models import (
    BackupObject,
    BackupStorage,
    Image,
    Instance,
    IscsiVolume,
    NfsVolume,
    StorageNode,
    Volume,
    VolumeSnapshot,
)
from collector.services.agent_reports import Setter, apply_agent_report
from collector.services.images import update_image  # noqa: F401 - exposed on this endpoint
from collector.states import (
    BACKUP_OBJECT_TRANSITIONS,
    SNAPSHOT_TRANSITIONS,
    VOLUME_TRANSITIONS,
)
from collector.timeutil import parse_time

ONDISK_STATES = ("available", "attaching", "attached", "detaching")
VOLUME_FIELDS = {"state": (str,), "status": (str,), "guest_device_name": (str, NULL),
                 "attached_at": (str, NULL), "detached_at": (str, NULL),
                 "deleted_at": (str, NULL), "instance_id": (str, NULL),
                 "volume_device": (dict,)}
DEVICE_FIELDS = {"local": {"path", "mount_label"}, "iscsi": {"iqn", "lun", "path"},
                 "nfs": {"path"}}
SNAPSHOT_FIELDS = {"state": (str,), "status": (int,), "size": (int,),
                   "destination_key": (str, NULL), "deleted_at": (str, NULL)}
BACKUP_FIELDS = {"state": (str,), "progress": (int, float), "checksum": (str, NULL),
                 "allocation_size": (int, NULL), "size": (int,), "object_key": (str, NULL),
                 "status": (int,), "deleted_at": (str, NULL)}
BO_CLONED = ("account_id", "display_name", "service_type", "description", "size",
             "allocation_size", "container_format", "checksum", "source_volume_id")
IMAGE_CLONED = ("account_id", "display_name", "service_type", "description", "boot_dev_type",
                "arch", "features", "file_format", "root_device", "instance_model_name",
                "parent_image_id", "os_type")


def _pre(session: Session, *rows: Any, bo_ids: set[str] = frozenset()) -> Preloaded:
    return Preloaded.load(session, label_uuids={r.canonical_uuid for r in rows},
                          backup_object_uuids=set(bo_ids))


def get_available_volumes(session: Session, sta_node_id: str) -> list[dict[str, Any]]:
    node = session.scalars(select(StorageNode).where(StorageNode.node_id == sta_node_id)).first()
    if node is None:
        raise UnknownStorageNodeID(f"unknown sta node id: {sta_node_id!r}")
    device = IscsiVolume if node.storage_type == "iscsi" else NfsVolume
    column = device.iscsi_storage_node_id if device is IscsiVolume else device.nfs_storage_node_id
    volumes = list(session.scalars(select(Volume).join(device, device.id == Volume.id).where(
        column == node.id, Volume.deleted_at.is_(None), Volume.state.in_(ONDISK_STATES))
        .order_by(Volume.id)))
    pre = _pre(session, *volumes)
    return [volume_hash(v, pre) for v in volumes]


def get_volume(session: Session, volume_id: str) -> dict[str, Any]:
    doc = get_volume_document(session, volume_id)
    if doc is None:
        raise Volume.not_found(f"unknown id '{volume_id}'")
    return doc


def get_snapshot(session: Session, snapshot_id: str) -> dict[str, Any]:
    return taggable_hash(VolumeSnapshot.by_cuuid(session, snapshot_id))


def get_backup_object(session: Session, backup_object_id: str) -> dict[str, Any]:
    bo = BackupObject.by_cuuid(session, backup_object_id)
    return {**backup_object_hash(bo, _pre(session, bo)), "uri": bo.uri}


def get_image(session: Session, image_id: str) -> dict[str, Any]:
    image = Image.by_cuuid(session, image_id)
    return image_hash(image, _pre(session, image, bo_ids={image.backup_object_id or ""}))


def update_volume(session: Session, volume_id: str, data: dict[str, Any]) -> None:
    vol = apply_agent_report(session, Volume, volume_id, data, kind="volume",
                             fields=VOLUME_FIELDS, transitions=VOLUME_TRANSITIONS,
                             check=_check_volume_report, setters=_VOLUME_SETTERS)
    if vol is not None:
        _check_guest_device_names(session, vol)


def _check_volume_report(vol: Volume, data: dict[str, Any]) -> None:
    """A ``volume_device`` must fit the volume's device row (refused even when deleted)."""
    if "volume_device" not in data:
        return
    values = data["volume_device"]
    if vol.volume_device is None:
        raise InvalidArgument(f"volume {vol.canonical_uuid} has no device row to update")
    unknown = set(values) - DEVICE_FIELDS[vol.volume_type]
    if unknown:
        raise InvalidArgument(f"unknown {vol.volume_type} device field(s): {sorted(unknown)}")
    cloned_fields(f"{vol.volume_type} device", type(vol.volume_device), values, values)


def _set_volume_device(session: Session, vol: Volume, values: dict[str, Any]) -> None:
    for key, value in values.items():  # checked by _check_volume_report
        setattr(vol.volume_device, key, value)


def _set_instance_id(session: Session, vol: Volume, instance_id: str | None) -> None:
    vol.instance_id = None if instance_id is None else \
        Instance.by_cuuid(session, instance_id).id


def _set_time(key: str) -> Setter:
    def setter(session: Session, row: Any, value: str | None) -> None:
        setattr(row, key, parse_time(value, key))
    return setter


_VOLUME_SETTERS: dict[str, Setter] = {
    "volume_device": _set_volume_device, "instance_id": _set_instance_id,
    "attached_at": _set_time("attached_at"), "detached_at": _set_time("detached_at")}


def _check_guest_device_names(session: Session, vol: Volume) -> None:
    if vol.state != "attached" or vol.instance_id is None or not vol.guest_device_name:
        return
    # Read before this change is flushed: the unique index would refuse it first, without
    # naming the volume that holds the name (two racing updates still meet that index).
    with session.no_autoflush:
        clash = session.scalars(select(Volume.uuid).where(
            Volume.instance_id == vol.instance_id, Volume.state == "attached",
            Volume.guest_device_name == vol.guest_device_name, Volume.id != vol.id,
            Volume.deleted_at.is_(None))).first()
    if clash:
        raise ValidationFailed(
            f"guest device {vol.guest_device_name!r} is already used by vol-{clash}")


def update_snapshot(session: Session, snapshot_id: str, data: dict[str, Any]) -> None:
    apply_agent_report(session, VolumeSnapshot, snapshot_id, data, kind="snapshot",
                       fields=SNAPSHOT_FIELDS, transitions=SNAPSHOT_TRANSITIONS)


def update_backup_object(session: Session, backup_object_id: str, data: dict[str, Any]) -> None:
    bo = apply_agent_report(session, BackupObject, backup_object_id, data,
                            kind="backup object", fields=BACKUP_FIELDS,
                            transitions=BACKUP_OBJECT_TRANSITIONS,
                            check=_check_backup_report, setters=_BACKUP_SETTERS)
    if bo is not None and bo.state == "available":
        bo.progress = 100.0


def _check_backup_report(bo: BackupObject, data: dict[str, Any]) -> None:
    if "progress" in data and not 0 <= data["progress"] <= 100:
        raise InvalidArgument("progress must be within 0..100")


def _set_progress(session: Session, bo: BackupObject, progress: float) -> None:
    bo.progress = max(bo.progress or 0.0, float(progress))  # never goes down


_BACKUP_SETTERS: dict[str, Setter] = {"progress": _set_progress}


def _storage_of(session: Session, node_id: str) -> BackupStorage:
    storage = session.scalars(select(BackupStorage).where(
        BackupStorage.node_id == node_id, BackupStorage.deleted_at.is_(None))).first()
    if storage is None:
        raise UnknownBackupStorage(f"unknown backup storage: {node_id!r}")
    return storage


def _new_backup_object(session: Session, storage: BackupStorage,
                       values: dict[str, Any]) -> BackupObject:
    bo = BackupObject(backup_storage_id=storage.id, state="pending", **values)
    session.add(bo)
    session.flush()
    bo.object_key = bo.canonical_uuid
    return bo


def register_backup_object_transfer(session: Session, node_id: str,
                                    bo_data: dict[str, Any]) -> dict[str, Any]:
    values = cloned_fields("backup object", BackupObject, bo_data, BO_CLONED)
    bo = _new_backup_object(session, _storage_of(session, node_id), values)
    return backup_object_hash(bo, Preloaded())


def register_image_transfer(session: Session, node_id: str, image_data: dict[str, Any],
                            bo_data: dict[str, Any]) -> dict[str, Any]:
    bo_values = cloned_fields("backup object", BackupObject, bo_data, BO_CLONED)
    image_values = cloned_fields("image", Image, image_data, IMAGE_CLONED)
    if image_values.get("os_type", "linux") not in ("linux", "windows"):
        raise InvalidArgument(f"unknown os_type: {image_values.get('os_type')!r}")
    bo = _new_backup_object(session, _storage_of(session, node_id), bo_values)
    image = Image(state="pending", backup_object_id=bo.canonical_uuid, **image_values)
    session.add(image)
    session.flush()
    pre = Preloaded(backup_objects={bo.canonical_uuid: bo})
    return {"backup_object": backup_object_hash(bo, pre), "image": image_hash(image, pre)}


def post_process_backup_image(session: Session, image_id: str) -> None:
    image = Image.by_cuuid(session, image_id, for_update=True)
    wanted = {image.backup_object_id} if image.backup_object_id else set()
    for item in image.volumes or []:
        if isinstance(item, dict) and item.get("backup_object_id"):
            wanted.add(item["backup_object_id"])
    raw = [w.split("-", 1)[1] for w in wanted if w.startswith("bo-")]
    states = list(session.scalars(select(BackupObject.state).where(BackupObject.uuid.in_(raw))))
    if len(states) == len(raw) and all(s == "available" for s in states) and \
            image.state != "deleted":
        image.state = "available"
