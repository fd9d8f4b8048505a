"""``api``: the original REST API's side of standalone volumes (scheduler spec 1.8).

create_volume(params) -> volume document: ``scheduling`` and job ``scheduler.schedule_volume``,
    or with ``storage_node_id`` its space claimed there, ``pending`` and ``sta-handle.<node>``
    ``create_volume``
list_volumes / show_volume -> documents (``documents.api_views``)

Every function runs in the caller's transaction. ``create_volume`` checks the request whole
before anything is written: first its shape (``requests.VolumeRequest``), then what it names
in the database. The writes happen in a savepoint: a refused request leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from collector import wire
from collector.db import outbox
from collector.documents.api_views import volume_api_document, volumes_query
from collector.errors import InvalidParameter, OutOfDiskSpace
from collector.models import StorageNode, Volume
from collector.scheduling import capacity, placement, placement_config
from collector.scheduling.candidates import StorageCandidate
from collector.services.api.requests import VolumeRequest
from collector.services.api.rows import (
    MB,
    VolumeSpec,
    add_volume,
    fresh_document,
    listed_documents,
    live_backup_object,
    shown_document,
)


def create_volume(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A standalone (shared) volume: placed by the scheduler, or on the storage node named."""
    request = VolumeRequest.from_params(params)
    if request.backup_object_id is not None:
        size = live_backup_object(session, request.backup_object_id).size
    else:
        size = request.volume_size * MB
    service_type = placement_config.scheduler_config().service_type(request.service_type or None).name
    node = None
    if request.storage_node_id is not None:
        node = _online_storage_node(session, request.storage_node_id)
    elif not capacity.domain_storage_capacity(session, size):
        raise OutOfDiskSpace(f"the online storage nodes together lack {size} bytes")

    with session.begin_nested():
        vol = add_volume(session, None, VolumeSpec(
            size=size, local=False, backup_object_id=request.backup_object_id,
            display_name=request.display_name),
            account_id=request.account_id, service_type=service_type)
        vol.request_params = request.given
        session.flush()
        if node is None:
            outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_VOLUME,
                               vol.canonical_uuid, resource_id=vol.canonical_uuid)
        else:
            _place_volume_on(session, vol, node)
    return _volume_document(session, vol)


def _online_storage_node(session: Session, storage_node_id: str) -> StorageNode:
    node = StorageNode.by_cuuid(session, storage_node_id)
    if node.status != "online":
        raise InvalidParameter(f"storage node {storage_node_id} is {node.status}, not online")
    return node


def _place_volume_on(session: Session, vol: Volume, node: StorageNode) -> None:
    """The operator's choice of storage node: its space claimed atomically (the original
    checked nothing), the device row made, and the volume created there."""
    if not capacity.claim_storage(session, node.id, vol):
        raise OutOfDiskSpace(f"storage node {node.canonical_uuid} lacks {vol.size} bytes")
    placement.associate(session, vol, StorageCandidate(
        id=node.id, uuid=node.canonical_uuid, node_id=node.node_id,
        storage_type=node.storage_type, online=True,
        offering_disk_bytes=node.offering_disk_space_mb * MB))
    vol.state = "pending"
    outbox.jobs.submit(session, wire.node_queue(wire.STA_HANDLE, node.node_id),
                       wire.StaJob.CREATE_VOLUME, vol.canonical_uuid,
                       resource_id=vol.canonical_uuid)


def _volume_document(session: Session, vol: Volume) -> dict[str, Any]:
    return fresh_document(session, vol, volumes_query(), volume_api_document)


def show_volume(session: Session, volume_id: str) -> dict[str, Any]:
    """The volume's API document (UnknownVolumeID when there is none)."""
    return shown_document(session, Volume, volume_id, volumes_query(), volume_api_document)


def list_volumes(session: Session, state: str | None = None, account_id: str | None = None,
                 include_deleted: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; deleted ones only when asked for (or by ``state``)."""
    return listed_documents(session, Volume, volumes_query(), volume_api_document,
                            Volume.deleted_at, state, account_id, include_deleted, limit)
