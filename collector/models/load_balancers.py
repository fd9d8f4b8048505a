"""Load balancers (an LB instance), their targets (vifs by canonical id) and inbounds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.errors import UnknownLoadBalancerID
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)
from collector.timeutil import utcnow


@register_taggable
class LoadBalancer(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "load_balancers"
    prefix = "lb"
    not_found = UnknownLoadBalancerID

    account_id: Mapped[str | None] = mapped_column(String(255))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), index=True)
    instance_protocol: Mapped[str] = mapped_column(String(10), nullable=False, default="http")
    instance_port: Mapped[int] = mapped_column(Integer, nullable=False, default=80)
    balance_algorithm: Mapped[str | None] = mapped_column(String(64))
    cookie_name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    private_key: Mapped[str | None] = mapped_column(Text)
    public_key: Mapped[str | None] = mapped_column(Text)
    allow_list: Mapped[list | None] = mapped_column()
    httpchk_path: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))

    instance = relationship("Instance")
    targets = relationship("LoadBalancerTarget", back_populates="load_balancer")
    inbounds = relationship("LoadBalancerInbound", back_populates="load_balancer")

    @property
    def label(self) -> str:
        return f"load_balancer.{self.uuid}"


class LoadBalancerTarget(Base):
    """``network_vif_id`` is the target vif's canonical id (``vif-...``)."""

    __tablename__ = "load_balancer_targets"
    __table_args__ = (UniqueConstraint("load_balancer_id", "network_vif_id", "is_deleted"),)

    network_vif_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    load_balancer_id: Mapped[int] = mapped_column(ForeignKey("load_balancers.id"), index=True)
    fallback_mode: Mapped[str] = mapped_column(String(10), nullable=False, default="off")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    load_balancer = relationship(LoadBalancer, back_populates="targets")


class LoadBalancerInbound(Base):
    __tablename__ = "load_balancer_inbounds"

    load_balancer_id: Mapped[int] = mapped_column(ForeignKey("load_balancers.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(10), nullable=False, default="http")
    port: Mapped[int] = mapped_column(Integer, nullable=False, default=80)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    load_balancer = relationship(LoadBalancer, back_populates="inbounds")
