"""Which nodes an id belongs to: the ownership behind ``collector.services.authorization``.

Each function takes the id an agent named and the kind of node asking (``hva``, ``sta``,
``natbox``) and returns the node ids that own it for that kind: an instance is its host's
(and, during a live migration, the destination's) for a hypervisor, and the storage node's
of its volumes for a storage agent. One compiled statement each (``collector.db.compiled``):
every agent call pays for one, so it is a primary-key walk, not a union of every relation.
An id that is malformed or unknown belongs to nobody.
"""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from collector import ids, wire
from collector.db.compiled import Query, fetch
from collector.errors import CollectorError
from collector.models import (
    HostNode,
    Instance,
    IscsiVolume,
    MigrationAllocation,
    NetworkVif,
    NfsVolume,
    QueuedJob,
    StorageNode,
    Volume,
    VolumeSnapshot,
)
from collector.signing import STA, node_kind

_RAW = bindparam("raw")


def _hosts_of(instance_id: object) -> Query:
    """The hosts running, or receiving in a live migration, the instance ``instance_id``
    (a scalar select of the instance's primary key)."""
    receiving = select(MigrationAllocation.host_node_id) \
        .where(MigrationAllocation.instance_id == instance_id)
    running = select(Instance.host_node_id).where(Instance.id == instance_id)
    return Query(select(HostNode.node_id).where(or_(
        HostNode.id == running.scalar_subquery(), HostNode.id.in_(receiving))))


def _storage_of(volume_ids: object) -> Query:
    """The storage nodes holding the volumes ``volume_ids`` (a select of their keys)."""
    return Query(select(StorageNode.node_id).where(or_(
        StorageNode.id.in_(select(IscsiVolume.iscsi_storage_node_id)
                           .where(IscsiVolume.id.in_(volume_ids))),
        StorageNode.id.in_(select(NfsVolume.nfs_storage_node_id)
                           .where(NfsVolume.id.in_(volume_ids))))))


_INSTANCE = select(Instance.id).where(Instance.uuid == _RAW).scalar_subquery()
_INSTANCE_HOSTS = _hosts_of(_INSTANCE)
_INSTANCE_STORAGE = _storage_of(select(Volume.id).where(Volume.instance_id == _INSTANCE))
_VNIC_HOSTS = _hosts_of(select(NetworkVif.instance_id).where(NetworkVif.uuid == _RAW)
                        .scalar_subquery())
_VOLUME = select(Volume.id).where(Volume.uuid == _RAW)
_VOLUME_STORAGE = _storage_of(_VOLUME)
_VOLUME_HOSTS = _hosts_of(select(Volume.instance_id).where(Volume.uuid == _RAW)
                          .scalar_subquery())
_SNAPSHOT_STORAGE = Query(select(StorageNode.node_id)
                          .join(VolumeSnapshot, VolumeSnapshot.storage_node_id == StorageNode.id)
                          .where(VolumeSnapshot.uuid == _RAW))
_HOST = Query(select(HostNode.node_id).where(HostNode.uuid == _RAW))
_JOB_QUEUE = Query(select(QueuedJob.queue_name).where(QueuedJob.uuid == _RAW))


def _run(session: Session, query: Query, value: object, prefix: str) -> set[str]:
    try:
        raw = ids.raw_part(value, prefix)
    except CollectorError:
        return set()
    [rows] = fetch(session, (query, {"raw": raw}))
    return {row[0] for row in rows if row[0]}


def instance_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """A host's instance (running there, or migrating to it); for a storage agent, an
    instance booting on one of its volumes."""
    query = _INSTANCE_STORAGE if kind == STA else _INSTANCE_HOSTS
    return _run(session, query, value, Instance.prefix)


def vnic_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """The hosts of the vnic's instance."""
    return _run(session, _VNIC_HOSTS, value, NetworkVif.prefix)


def volume_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """The storage node holding the volume; for a host, the volume of one of its
    instances (a local volume, or one attached)."""
    query = _VOLUME_STORAGE if kind == STA else _VOLUME_HOSTS
    return _run(session, query, value, Volume.prefix)


def snapshot_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """The storage node holding the snapshot."""
    return _run(session, _SNAPSHOT_STORAGE, value, VolumeSnapshot.prefix)


def host_node_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """The agent of the host ``hn-...``."""
    return _run(session, _HOST, value, HostNode.prefix)


def node_itself(_session: Session, value: object, kind: str | None) -> set[str]:
    """A node id names its own node."""
    return {value} if isinstance(value, str) and node_kind(value) else set()


def queue_node(_session: Session, value: object, kind: str | None = None) -> set[str]:
    """A node queue ``<endpoint>.<node id>`` belongs to its node."""
    if not isinstance(value, str) or "." not in value:
        return set()
    endpoint, node = value.split(".", 1)
    return {node} if endpoint in wire.NODE_JOBS else set()


def job_nodes(session: Session, value: object, kind: str | None) -> set[str]:
    """A job of the ledger belongs to the node of its queue."""
    queues = _run(session, _JOB_QUEUE, value, QueuedJob.prefix)
    return {node for queue in queues for node in queue_node(session, queue)}
