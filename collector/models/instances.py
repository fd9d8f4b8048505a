"""Instances and what hangs off them: hostname leases, monitor attrs, SSH keys, labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.errors import NotFound, UnknownInstanceID
from collector.models.accounts import Account  # re-exported: it used to live here
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)


@register_taggable
class Instance(Taggable, Timestamps, Base):
    """A virtual machine. ``terminated_at`` marks it soft-deleted (state ``terminated``)."""

    __tablename__ = "instances"
    prefix = "i"
    not_found = UnknownInstanceID

    account_id: Mapped[str | None] = mapped_column(String(255), index=True)
    host_node_id: Mapped[int | None] = mapped_column(ForeignKey("host_nodes.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="init", index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="init")
    hostname: Mapped[str | None] = mapped_column(String(32))
    ssh_key_pair_id: Mapped[int | None] = mapped_column(ForeignKey("ssh_key_pairs.id"),
                                                        index=True)
    ha_enabled: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    quota_weight: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    cpu_cores: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    memory_size: Mapped[int] = mapped_column(Integer, nullable=False, default=512)
    user_data: Mapped[str] = mapped_column(Text, nullable=False, default="")
    runtime_config: Mapped[dict | None] = mapped_column()
    request_params: Mapped[dict | None] = mapped_column()
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    hypervisor: Mapped[str | None] = mapped_column(String(20))
    boot_volume_id: Mapped[str | None] = mapped_column(String(255))
    encrypted_password: Mapped[str | None] = mapped_column(Text)
    password_will_be_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which placement of the instance is current: every placement that claims a host for
    # it counts one more, and a report or job of an older one is refused (fencing).
    placement_generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1,
                                                      server_default="1")
    placement_error: Mapped[str | None] = mapped_column(Text)  # why placement failed
    placement_group_id: Mapped[int | None] = mapped_column(ForeignKey("placement_groups.id"),
                                                           index=True)

    host_node = relationship("HostNode", back_populates="instances")
    image = relationship("Image")
    ssh_key_pair = relationship("SshKeyPair")
    volumes = relationship("Volume", back_populates="instance", order_by="Volume.id")
    network_vifs = relationship("NetworkVif", back_populates="instance",
                                order_by="NetworkVif.device_index")

    @classmethod
    def alive(cls):  # noqa: ANN206 - SQL expression
        return cls.terminated_at.is_(None)

    @property
    def is_alive(self) -> bool:
        return self.terminated_at is None

    @property
    def is_ha_enabled(self) -> bool:
        return self.ha_enabled == 1

    def column_values(self) -> dict[str, Any]:
        out = super().column_values()
        out.pop("placement_group_id", None)  # the API's (show_placement_group), not the original's
        return out


class HostnameLease(Timestamps, Base):
    __tablename__ = "hostname_leases"
    __table_args__ = (UniqueConstraint("account_id", "hostname"),)

    account_id: Mapped[str] = mapped_column(String(255), nullable=False)
    hostname: Mapped[str] = mapped_column(String(32), nullable=False)


class InstanceMonitorAttr(Timestamps, Base):
    __tablename__ = "instance_monitor_attrs"

    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    recipients: Mapped[list | None] = mapped_column()
    enabled: Mapped[bool] = mapped_column(default=False)


@register_taggable
class SshKeyPair(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "ssh_key_pairs"
    prefix = "ssh"
    not_found = NotFound

    account_id: Mapped[str | None] = mapped_column(String(255))
    finger_print: Mapped[str | None] = mapped_column(String(100))
    public_key: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))


class ResourceLabel(Timestamps, Base):
    """A label on any taggable resource (keyed by its canonical id)."""

    __tablename__ = "resource_labels"
    __table_args__ = (UniqueConstraint("resource_uuid", "name"),)

    resource_uuid: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    value_type: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    string_value: Mapped[str | None] = mapped_column(String(255))
    blob_value: Mapped[bytes | None] = mapped_column(LargeBinary)


__all__ = ["Account", "Instance", "HostnameLease", "InstanceMonitorAttr", "SshKeyPair",
           "ResourceLabel", "or_"]
