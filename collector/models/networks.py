"""Networks: DC networks, networks, vifs, IP and MAC leases, IP pools and handles, DHCP
ranges, routes, services, vif monitors, and the tag groups that map networks."""

from __future__ import annotations

import ipaddress
import socket
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.errors import NotFound, UnknownNetworkID, UnknownVnicID
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)

# A lease's alloc_type: the original's 0 auto, 1 reserved, 2 manual; the Collector writes
# and reads only auto.
ALLOC_AUTO = 0


def ipv4_to_s(value: int | None) -> str | None:
    # inet_ntoa is ~20x faster than ipaddress here, and documents convert thousands.
    return None if value is None else socket.inet_ntoa(value.to_bytes(4, "big"))


def ipv4_to_i(value: str) -> int:
    return int(ipaddress.IPv4Address(value))


def pretty_mac(mac: str | int, delim: str = ":") -> str:
    text = f"{mac:012x}" if isinstance(mac, int) else mac.lower().zfill(12)
    return delim.join(text[i:i + 2] for i in range(0, 12, 2))


@register_taggable
class DcNetwork(Taggable, Timestamps, Base):
    __tablename__ = "dc_networks"
    prefix = "dcn"
    not_found = NotFound

    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    vlan_lease_id: Mapped[int | None] = mapped_column(Integer)
    offering_network_modes: Mapped[list | None] = mapped_column()
    allow_new_networks: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    vlan_lease = relationship("VlanLease", uselist=False,
                              primaryjoin="DcNetwork.id == foreign(VlanLease.dc_network_id)",
                              viewonly=True)


@register_taggable
class VlanLease(Taggable, Timestamps, Base):
    __tablename__ = "vlan_leases"
    __table_args__ = (UniqueConstraint("dc_network_id", "tag_id"),)
    prefix = "vlan"
    not_found = NotFound

    account_id: Mapped[str | None] = mapped_column(String(255))
    tag_id: Mapped[int] = mapped_column(Integer, nullable=False)
    dc_network_id: Mapped[int | None] = mapped_column(ForeignKey("dc_networks.id"))


@register_taggable
class Network(Taggable, Timestamps, Base):
    __tablename__ = "networks"
    prefix = "nw"
    not_found = UnknownNetworkID

    account_id: Mapped[str | None] = mapped_column(String(255))
    ipv4_network: Mapped[str] = mapped_column(String(255), nullable=False)
    ipv4_gw: Mapped[str | None] = mapped_column(String(255))
    prefix_len: Mapped[int] = mapped_column("prefix", Integer, nullable=False, default=24)
    metric: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    domain_name: Mapped[str | None] = mapped_column(String(255))
    dns_server: Mapped[str | None] = mapped_column(String(255))
    dhcp_server: Mapped[str | None] = mapped_column(String(255))
    metadata_server: Mapped[str | None] = mapped_column(String(255))
    metadata_server_port: Mapped[int | None] = mapped_column(Integer)
    nat_network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    dc_network_id: Mapped[int | None] = mapped_column(ForeignKey("dc_networks.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    gateway_network_id: Mapped[int | None] = mapped_column(Integer)
    network_mode: Mapped[str] = mapped_column(String(20), nullable=False,
                                              default="securitygroup")
    bandwidth: Mapped[float | None] = mapped_column(Float)
    ip_assignment: Mapped[str] = mapped_column(String(10), nullable=False, default="asc")
    editable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    service_type: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    # The last address the Incremental strategy handed out: the next search starts after it.
    ip_cursor: Mapped[int | None] = mapped_column(BigInteger)

    dc_network = relationship(DcNetwork)
    nat_network = relationship("Network", remote_side="Network.id")
    dhcp_ranges = relationship("DhcpRange", back_populates="network")

    @property
    def ipv4(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ipv4_network}/{self.prefix_len}", strict=False)


@register_taggable
class NetworkVif(Taggable, SoftDelete, Timestamps, Base):
    """A virtual interface; ``mac_addr`` is 12 lowercase hex digits."""

    __tablename__ = "network_vifs"
    prefix = "vif"
    not_found = UnknownVnicID

    account_id: Mapped[str | None] = mapped_column(String(255))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    nat_network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    mac_addr: Mapped[str] = mapped_column(String(12), nullable=False)
    device_index: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    instance = relationship("Instance", back_populates="network_vifs")
    network = relationship(Network, foreign_keys=[network_id])
    nat_network = relationship(Network, foreign_keys=[nat_network_id])
    ip_leases = relationship("NetworkVifIpLease", back_populates="network_vif",
                             order_by="NetworkVifIpLease.id")
    security_groups = relationship("SecurityGroup", secondary="network_vif_security_groups",
                                   back_populates="network_vifs", order_by="SecurityGroup.id")
    monitors = relationship("NetworkVifMonitor", back_populates="network_vif")
    services = relationship("NetworkService", back_populates="network_vif")

    def pretty_mac_addr(self, delim: str = ":") -> str:
        return pretty_mac(self.mac_addr, delim)


class NetworkVifIpLease(Timestamps, Base):
    """An IPv4 address leased to a vif (``ipv4`` as an integer)."""

    __tablename__ = "network_vif_ip_leases"
    __table_args__ = (UniqueConstraint("network_id", "network_vif_id", "ipv4", "is_deleted"),)

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    network_vif_id: Mapped[int | None] = mapped_column(ForeignKey("network_vifs.id"), index=True)
    ipv4: Mapped[int] = mapped_column(BigInteger, nullable=False)
    alloc_type: Mapped[int] = mapped_column(Integer, nullable=False, default=ALLOC_AUTO)
    description: Mapped[str | None] = mapped_column(String(255))
    ip_handle_id: Mapped[int | None] = mapped_column(ForeignKey("ip_handles.id"), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    network = relationship(Network)
    network_vif = relationship(NetworkVif, back_populates="ip_leases")
    ip_handle = relationship("IpHandle", back_populates="ip_lease")

    @property
    def ipv4_s(self) -> str:
        return ipv4_to_s(self.ipv4) or ""

    @property
    def is_alive(self) -> bool:
        return self.deleted_at is None


class IpLease(Timestamps, Base):
    """Guard row: one alive address per network (unique)."""

    __tablename__ = "ip_leases"
    __table_args__ = (UniqueConstraint("network_id", "ipv4"),)

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    ipv4: Mapped[int] = mapped_column(BigInteger, nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))


@register_taggable
class IpPool(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "ip_pools"
    prefix = "ipp"
    not_found = NotFound

    account_id: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    expire_initial: Mapped[int | None] = mapped_column(Integer)
    expire_released: Mapped[int | None] = mapped_column(Integer)


class IpPoolDcNetwork(Timestamps, Base):
    __tablename__ = "ip_pool_dc_networks"
    __table_args__ = (UniqueConstraint("ip_pool_id", "dc_network_id"),)

    ip_pool_id: Mapped[int] = mapped_column(ForeignKey("ip_pools.id"))
    dc_network_id: Mapped[int] = mapped_column(ForeignKey("dc_networks.id"), index=True)


@register_taggable
class IpHandle(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "ip_handles"
    prefix = "ip"
    not_found = NotFound

    display_name: Mapped[str | None] = mapped_column(String(255))
    ip_pool_id: Mapped[int | None] = mapped_column(ForeignKey("ip_pools.id"), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    ip_lease = relationship(NetworkVifIpLease, back_populates="ip_handle", uselist=False)


class MacLease(Timestamps, Base):
    __tablename__ = "mac_leases"

    mac_addr: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)


@register_taggable
class MacRange(Taggable, Timestamps, Base):
    __tablename__ = "mac_ranges"
    prefix = "mr"
    not_found = NotFound

    vendor_id: Mapped[int] = mapped_column(Integer, nullable=False)
    range_begin: Mapped[int] = mapped_column(Integer, nullable=False)
    range_end: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))


class DhcpRange(Timestamps, Base):
    __tablename__ = "dhcp_ranges"

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    range_begin: Mapped[int] = mapped_column(BigInteger, nullable=False)
    range_end: Mapped[int] = mapped_column(BigInteger, nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))

    network = relationship(Network, back_populates="dhcp_ranges")


class NetworkRoute(Timestamps, Base):
    """A NAT route between an inner and an outer lease (integer id is its public id)."""

    __tablename__ = "network_routes"
    __table_args__ = (UniqueConstraint("inner_lease_id", "outer_lease_id", "is_deleted"),)

    route_type: Mapped[str] = mapped_column(String(20), nullable=False, default="external-ip")
    inner_lease_id: Mapped[int] = mapped_column(ForeignKey("network_vif_ip_leases.id"))
    outer_lease_id: Mapped[int] = mapped_column(ForeignKey("network_vif_ip_leases.id"),
                                                index=True)
    release_outer_vif: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    release_inner_vif: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    inner_lease = relationship(NetworkVifIpLease, foreign_keys=[inner_lease_id])
    outer_lease = relationship(NetworkVifIpLease, foreign_keys=[outer_lease_id])


class NetworkService(Timestamps, Base):
    __tablename__ = "network_services"
    __table_args__ = (UniqueConstraint("network_vif_id", "name"),)

    network_vif_id: Mapped[int] = mapped_column(ForeignKey("network_vifs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    incoming_port: Mapped[int | None] = mapped_column(Integer)
    outgoing_port: Mapped[int | None] = mapped_column(Integer)

    network_vif = relationship(NetworkVif, back_populates="services")


@register_taggable
class NetworkVifMonitor(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "network_vif_monitors"
    prefix = "nwm"
    not_found = NotFound

    network_vif_id: Mapped[int] = mapped_column(ForeignKey("network_vifs.id"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    title: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict | None] = mapped_column()

    network_vif = relationship(NetworkVif, back_populates="monitors")


class Tag(Taggable, Timestamps, Base):
    """Resource groups: type 10 network group (nwg), 11 host group (hng), 12 storage (sng)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("account_id", "type_id", "name"),)
    __mapper_args__ = {"polymorphic_on": "type_id", "polymorphic_identity": 0}
    prefix = "tag"
    not_found = NotFound

    account_id: Mapped[str | None] = mapped_column(String(255))
    type_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    attributes: Mapped[str | None] = mapped_column(String(255))


class NetworkGroup(Tag):
    __mapper_args__ = {"polymorphic_identity": 10}
    prefix = "nwg"


class HostNodeGroup(Tag):
    __mapper_args__ = {"polymorphic_identity": 11}
    prefix = "hng"


class StorageNodeGroup(Tag):
    __mapper_args__ = {"polymorphic_identity": 12}
    prefix = "sng"


for _cls in (Tag, NetworkGroup, HostNodeGroup, StorageNodeGroup):
    register_taggable(_cls)


class TagMapping(Timestamps, Base):
    """Membership of a resource (by canonical id) in a tag group."""

    __tablename__ = "tag_mappings"
    __table_args__ = (UniqueConstraint("tag_id", "uuid"),)

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), index=True)
    uuid: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    sort_index: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
