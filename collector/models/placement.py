"""Placement claims: what each instance holds on its host and each volume on its storage.

The used-capacity counters on ``host_nodes`` / ``storage_nodes`` are the sums of these rows
(``collector.scheduling.capacity.reconcile`` recomputes them). A release deletes the row and
subtracts exactly what it recorded, so a change of the instance's size cannot skew them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, delete, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from collector.models.base import Base, Timestamps
from collector.models.nodes import HostNode, StorageNode


class _HostClaim(Timestamps):
    """An instance's claim on a host: one per instance and kind of claim."""

    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    host_node_id: Mapped[int] = mapped_column(ForeignKey("host_nodes.id"), index=True)
    cpu_cores: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_size: Mapped[int] = mapped_column(Integer, nullable=False)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


class HostAllocation(_HostClaim, Base):
    __tablename__ = "host_allocations"


class MigrationAllocation(_HostClaim, Base):
    """What a live migration holds on its destination while the instance still runs (and
    holds its ``host_allocations`` row) on the source; promoted to the host allocation when
    the switch is reported, released when the migration fails."""

    __tablename__ = "migration_allocations"

    # The migration job (``migration-handle.<dest>``) the claim is for: its end frees it.
    job_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)


class StorageAllocation(Timestamps, Base):
    __tablename__ = "storage_allocations"

    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id"), unique=True)
    storage_node_id: Mapped[int] = mapped_column(ForeignKey("storage_nodes.id"), index=True)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


def release_storage_allocation(session: Session, volume_id: int) -> None:
    """Give back what the volume claimed on its storage node (idempotent).

    Here, beside the rows, because every volume deletion (``Volume.destroy``) calls it.
    """
    row = session.execute(delete(StorageAllocation)
                          .where(StorageAllocation.volume_id == volume_id)
                          .returning(StorageAllocation.storage_node_id,
                                     StorageAllocation.disk_bytes)
                          .execution_options(synchronize_session=False)).first()
    if row is None:
        return
    session.execute(update(StorageNode).where(StorageNode.id == row.storage_node_id).values(
        used_disk_bytes=StorageNode.used_disk_bytes - row.disk_bytes)
        .execution_options(synchronize_session=False))
    node = session.identity_map.get(session.identity_key(StorageNode, row.storage_node_id))
    if node is not None:
        session.expire(node, ["used_disk_bytes"])


def release_migration_allocation(session: Session, instance_id: int,
                                 give_back: bool = True) -> Any:
    """Drop the instance's destination claim; its row (host_node_id, cpu_cores,
    memory_size, disk_bytes, job_id) or None when there was none. ``give_back`` False keeps
    the host's counters (the claim becomes the instance's host allocation).

    Here, beside the rows, because the job ledger (a failed migration job) calls it too."""
    row = session.execute(delete(MigrationAllocation)
                          .where(MigrationAllocation.instance_id == instance_id)
                          .returning(MigrationAllocation.host_node_id,
                                     MigrationAllocation.cpu_cores,
                                     MigrationAllocation.memory_size,
                                     MigrationAllocation.disk_bytes,
                                     MigrationAllocation.job_id)
                          .execution_options(synchronize_session=False)).first()
    if row is None or not give_back:
        return row
    session.execute(update(HostNode).where(HostNode.id == row.host_node_id).values(
        used_cpu_cores=HostNode.used_cpu_cores - row.cpu_cores,
        used_memory_size=HostNode.used_memory_size - row.memory_size,
        used_disk_bytes=HostNode.used_disk_bytes - row.disk_bytes)
        .execution_options(synchronize_session=False))
    host = session.identity_map.get(session.identity_key(HostNode, row.host_node_id))
    if host is not None:
        session.expire(host, ["used_cpu_cores", "used_memory_size", "used_disk_bytes"])
    return row
