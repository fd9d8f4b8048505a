"""Security groups, their vif memberships and the references between groups."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.errors import UnknownSecurityGroupID
from collector.models.base import Base, Taggable, Timestamps, register_taggable


@register_taggable
class SecurityGroup(Taggable, Timestamps, Base):
    """``rule`` holds one rule per line (``tcp:22,22,ip4:0.0.0.0``)."""

    __tablename__ = "security_groups"
    prefix = "sg"
    not_found = UnknownSecurityGroupID

    account_id: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(Text)
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))

    network_vifs = relationship("NetworkVif", secondary="network_vif_security_groups",
                                back_populates="security_groups", order_by="NetworkVif.id")


class NetworkVifSecurityGroup(Base):
    __tablename__ = "network_vif_security_groups"
    __table_args__ = (UniqueConstraint("network_vif_id", "security_group_id"),)

    network_vif_id: Mapped[int] = mapped_column(ForeignKey("network_vifs.id"), index=True)
    security_group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"), index=True)


class SecurityGroupReference(Base):
    __tablename__ = "security_group_references"
    __table_args__ = (UniqueConstraint("referencer_id", "referencee_id"),)

    referencer_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"), index=True)
    referencee_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"), index=True)
