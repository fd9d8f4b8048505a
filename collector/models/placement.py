"""Placement claims: what each instance holds on its host and each volume on its storage.

The used-capacity counters on ``host_nodes`` / ``storage_nodes`` are the sums of these rows
(``collector.scheduling.capacity.reconcile`` recomputes them). A release deletes the row and
subtracts exactly what it recorded, so a change of the instance's size cannot skew them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, delete, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from collector.models.base import Base, Timestamps
from collector.models.nodes import StorageNode


class HostAllocation(Timestamps, Base):
    __tablename__ = "host_allocations"

    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    host_node_id: Mapped[int] = mapped_column(ForeignKey("host_nodes.id"), index=True)
    cpu_cores: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_size: Mapped[int] = mapped_column(Integer, nullable=False)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


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
