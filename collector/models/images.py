"""Machine images, backup objects and the backup storages holding them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.errors import UnknownBackupObjectID, UnknownBackupStorage, UnknownImageID
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)

BOOT_DEV_SAN, BOOT_DEV_LOCAL = 1, 2


@register_taggable
class BackupStorage(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "backup_storages"
    prefix = "bkst"
    not_found = UnknownBackupStorage

    display_name: Mapped[str | None] = mapped_column(String(255))
    storage_type: Mapped[str] = mapped_column(String(20), nullable=False, default="local")
    description: Mapped[str | None] = mapped_column(Text)
    base_uri: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    node_id: Mapped[str | None] = mapped_column(String(80), index=True)


@register_taggable
class BackupObject(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "backup_objects"
    prefix = "bo"
    not_found = UnknownBackupObjectID

    account_id: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    service_type: Mapped[str | None] = mapped_column(String(64))
    backup_storage_id: Mapped[int] = mapped_column(ForeignKey("backup_storages.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    allocation_size: Mapped[int | None] = mapped_column(BigInteger)
    container_format: Mapped[str] = mapped_column(String(20), nullable=False, default="raw")
    status: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="initialized")
    object_key: Mapped[str | None] = mapped_column(String(255))
    checksum: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source_volume_id: Mapped[str | None] = mapped_column(String(255), index=True)

    backup_storage = relationship(BackupStorage)

    @property
    def uri(self) -> str:
        return f"{self.backup_storage.base_uri}{self.object_key or ''}"


@register_taggable
class Image(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "images"
    prefix = "wmi"
    not_found = UnknownImageID

    account_id: Mapped[str | None] = mapped_column(String(255))
    boot_dev_type: Mapped[int] = mapped_column(Integer, nullable=False, default=BOOT_DEV_LOCAL)
    arch: Mapped[str] = mapped_column(String(10), nullable=False, default="x86_64")
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="init")
    features: Mapped[dict | None] = mapped_column()
    file_format: Mapped[str | None] = mapped_column(String(20))
    root_device: Mapped[str | None] = mapped_column(String(255))
    is_cacheable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    instance_model_name: Mapped[str | None] = mapped_column(String(255))
    parent_image_id: Mapped[str | None] = mapped_column(String(255))
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    backup_object_id: Mapped[str | None] = mapped_column(String(255))
    volumes: Mapped[list | None] = mapped_column()
    vifs: Mapped[list | None] = mapped_column()
    os_type: Mapped[str] = mapped_column(String(20), nullable=False, default="linux")

    @property
    def is_local_boot(self) -> bool:
        return self.boot_dev_type == BOOT_DEV_LOCAL
