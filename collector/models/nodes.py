"""Nodes: agent liveness rows, hypervisor hosts, storage nodes and host vnets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from collector.errors import UnknownHostNodeID, UnknownNodeID, UnknownStorageNodeID
from collector.models.base import Base, Taggable, Timestamps, UTCDateTime, register_taggable
from collector.timeutil import utcnow


class NodeState(Timestamps, Base):
    """One agent's liveness: state init|online|timeout|offline from its heartbeats."""

    __tablename__ = "node_states"

    node_id: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    boot_token: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="init")
    last_ping_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


@register_taggable
class HostNode(Taggable, Timestamps, Base):
    """A hypervisor host served by the agent ``node_id`` (``hva.<name>``)."""

    __tablename__ = "host_nodes"
    prefix = "hn"
    not_found = UnknownHostNodeID

    node_id: Mapped[str | None] = mapped_column(String(80), unique=True, nullable=True)
    arch: Mapped[str] = mapped_column(String(10), nullable=False, default="x86_64")
    hypervisor: Mapped[str] = mapped_column(String(20), nullable=False, default="kvm")
    display_name: Mapped[str | None] = mapped_column(String(255))
    offering_cpu_cores: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    offering_memory_size: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    offering_disk_space_mb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    scheduling_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Placement may hand out physical x ratio (in thousandths, collector.scheduling.ratios);
    # NULL: the scheduler configuration's default ratio.
    cpu_allocation_ratio_milli: Mapped[int | None] = mapped_column(Integer)
    ram_allocation_ratio_milli: Mapped[int | None] = mapped_column(Integer)
    # What placement claimed (sums of host_allocations), kept by one conditional UPDATE
    # per claim so concurrent schedulers can never over-commit (collector.scheduling).
    used_cpu_cores: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                server_default="0")
    used_memory_size: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                  server_default="0")
    used_disk_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0,
                                                 server_default="0")
    # When the host was last evacuated (database clock). An outage is evacuated once: a
    # node-offline event is acted on only if the node's last heartbeat is newer.
    evacuated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Candidate query: hosts of one hypervisor and architecture.
    __table_args__ = (Index("ix_host_nodes_hypervisor_arch", "hypervisor", "arch"),)

    node: Mapped[NodeState | None] = relationship(
        NodeState, primaryjoin="foreign(HostNode.node_id) == NodeState.node_id",
        viewonly=True, uselist=False,
    )
    instances = relationship("Instance", back_populates="host_node", viewonly=True)

    @property
    def status(self) -> str:
        return self.node.state if self.node is not None else "offline"

    @classmethod
    def by_node_id(cls, session: Session, node_id: str) -> HostNode:
        """The host served by agent ``node_id`` (``hva.demo1``); UnknownNodeID if none."""
        host = session.scalars(select(cls).where(cls.node_id == node_id)).first()
        if host is None:
            raise UnknownNodeID(f"unknown host node with node id {node_id!r}")
        return host


# Two PostgreSQL indexes hold the hosts in claim order (most free memory, or cores, first,
# at the default allocation ratio): migration 0018, ``FREE_CAPACITY_INDEXES``. Being
# expressions, they are not declared here (autogenerate cannot compare them).
FREE_CAPACITY_INDEXES = ("ix_host_nodes_free_memory", "ix_host_nodes_free_cpu")


@register_taggable
class StorageNode(Taggable, Timestamps, Base):
    """A storage node (``sta.<name>``); storage_type ``iscsi`` or ``nfs``."""

    __tablename__ = "storage_nodes"
    prefix = "sn"
    not_found = UnknownStorageNodeID

    node_id: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    offering_disk_space_mb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    storage_type: Mapped[str] = mapped_column(String(20), nullable=False, default="iscsi")
    display_name: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    mount_point: Mapped[str | None] = mapped_column(String(255))
    used_disk_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0,
                                                 server_default="0")

    node: Mapped[NodeState | None] = relationship(
        NodeState, primaryjoin="foreign(StorageNode.node_id) == NodeState.node_id",
        viewonly=True, uselist=False,
    )

    @property
    def status(self) -> str:
        return self.node.state if self.node is not None else "offline"


class HostNodeVnet(Timestamps, Base):
    """A host's virtual network attachment (one per host and network)."""

    __tablename__ = "host_node_vnets"
    __table_args__ = (UniqueConstraint("host_node_id", "network_id"),)

    host_node_id: Mapped[int] = mapped_column(ForeignKey("host_nodes.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    broadcast_addr: Mapped[str] = mapped_column(String(12), nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    network = relationship("Network")
