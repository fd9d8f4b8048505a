"""Volumes, their device rows (local / iSCSI / NFS) and legacy snapshots.

``volume_type`` is NULL until placed, then ``local``, ``iscsi`` or ``nfs``; the device
row of that kind shares the volume's id. Sizes are bytes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from collector.errors import UnknownSnapshotID, UnknownVolumeID
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)
from collector.models.placement import release_storage_allocation

LOCAL, ISCSI, NFS = "local", "iscsi", "nfs"

# The volumes attached to an instance under a guest device name; no two may share one. The
# service checks it first (a clear message); this index holds it under concurrent updates.
ATTACHED_GUEST_DEVICE = text(
    "state = 'attached' AND deleted_at IS NULL AND guest_device_name <> ''")


@register_taggable
class Volume(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "volumes"
    __table_args__ = (
        Index("ux_volumes_attached_guest_device", "instance_id", "guest_device_name",
              unique=True, postgresql_where=ATTACHED_GUEST_DEVICE,
              sqlite_where=ATTACHED_GUEST_DEVICE,
              info={"refusal": "the guest device name is already used by another volume "
                               "attached to that instance"}),
    )
    prefix = "vol"
    not_found = UnknownVolumeID

    account_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="initialized")
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="initialized")
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), index=True)
    guest_device_name: Mapped[str | None] = mapped_column(String(255))
    request_params: Mapped[dict | None] = mapped_column()
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    backup_object_id: Mapped[str | None] = mapped_column(String(255))
    volume_type: Mapped[str | None] = mapped_column(String(20))
    placement_error: Mapped[str | None] = mapped_column(Text)  # why placement failed

    instance = relationship("Instance", back_populates="volumes")
    local_volume = relationship("LocalVolume", uselist=False, back_populates="volume")
    iscsi_volume = relationship("IscsiVolume", uselist=False, back_populates="volume")
    nfs_volume = relationship("NfsVolume", uselist=False, back_populates="volume")

    @property
    def is_local_volume(self) -> bool:
        return self.volume_type == LOCAL

    @property
    def volume_device(self):  # noqa: ANN201 - one of the three device rows or None
        return {LOCAL: self.local_volume, ISCSI: self.iscsi_volume,
                NFS: self.nfs_volume}.get(self.volume_type or "")

    def destroy(self, when: datetime | None = None) -> None:
        """Soft delete: state ``deleted``, status ``offline``; its storage claim is freed."""
        super().destroy(when)
        self.status = "offline"
        session = object_session(self)
        if session is not None:
            # Every volume deletion ends here, so the storage counters stay true.
            release_storage_allocation(session, self.id)


class LocalVolume(Base):
    __tablename__ = "local_volumes"

    id: Mapped[int] = mapped_column(ForeignKey("volumes.id"), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    mount_label: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(String(255))

    volume = relationship(Volume, back_populates="local_volume")


class IscsiVolume(Base):
    __tablename__ = "iscsi_volumes"
    __table_args__ = (UniqueConstraint("iqn", "lun"),)

    id: Mapped[int] = mapped_column(ForeignKey("volumes.id"), primary_key=True)
    iscsi_storage_node_id: Mapped[int] = mapped_column(ForeignKey("storage_nodes.id"),
                                                       index=True)
    iqn: Mapped[str | None] = mapped_column(String(255))
    lun: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(String(255))

    volume = relationship(Volume, back_populates="iscsi_volume")
    storage_node = relationship("StorageNode")


class NfsVolume(Base):
    __tablename__ = "nfs_volumes"

    id: Mapped[int] = mapped_column(ForeignKey("volumes.id"), primary_key=True)
    nfs_storage_node_id: Mapped[int] = mapped_column(ForeignKey("storage_nodes.id"), index=True)
    path: Mapped[str | None] = mapped_column(String(255))

    volume = relationship(Volume, back_populates="nfs_volume")
    storage_node = relationship("StorageNode")


@register_taggable
class VolumeSnapshot(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "volume_snapshots"
    prefix = "snap"
    not_found = UnknownSnapshotID

    account_id: Mapped[str | None] = mapped_column(String(255))
    storage_node_id: Mapped[int | None] = mapped_column(ForeignKey("storage_nodes.id"),
                                                        index=True)
    origin_volume_id: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    status: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="initialized")
    destination_key: Mapped[str | None] = mapped_column(String(255))
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
