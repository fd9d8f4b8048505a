"""``collector seed``: a small datacenter to place work on (a new installation, the demo).

What it writes: host nodes of two sizes (``hva.<prefix>1`` ...), one iSCSI storage node
(``sta.<prefix>1``), a DC network, an instance network with a DHCP range, a NAT (outside)
network, a MAC address range, a backup storage with two images (local boot and shared,
SAN boot) and a security group that opens SSH. Nodes come online when their agents
heartbeat; nothing here claims a node is alive.

Idempotent: a row that exists (same node id, name or network) is kept, so seeding twice
gives the same datacenter, and ``hosts`` can grow it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import (
    BackupStorage,
    DcNetwork,
    HostNode,
    Image,
    MacRange,
    Network,
    SecurityGroup,
    StorageNode,
)
from workers.demo.world import make
from workers.demo.world.make import MAC_VENDOR, GiB, HostSize

__all__ = ["HOST_SIZES", "MAC_VENDOR", "HostSize", "seed_datacenter"]

# Two sizes, alternating: hva.<prefix>1 large, hva.<prefix>2 small, ...
HOST_SIZES = (HostSize(8, 16384, 200 * 1024), HostSize(4, 8192, 100 * 1024))


def _first(session: Session, model: type, **where: Any) -> Any:
    """The row an earlier seeding wrote (the oldest matching ``where``), or None."""
    stmt = select(model).filter_by(**where).order_by(model.id).limit(1)
    return session.scalars(stmt).first()


def seed_datacenter(session: Session, hosts: int = 4, prefix: str = "demo",
                    hypervisor: str = "kvm") -> dict[str, Any]:
    """Write (or complete) the datacenter; returns the canonical ids of what it holds."""
    if not 1 <= hosts <= 1000:
        from collector.errors import InvalidArgument

        raise InvalidArgument("hosts must be between 1 and 1000")
    # Each row is kept when it exists, else built by make (nodes offline: no heartbeat yet).
    host_rows = []
    for n in range(1, hosts + 1):
        node_id = f"hva.{prefix}{n}"
        size = HOST_SIZES[(n - 1) % len(HOST_SIZES)]
        host_rows.append(_first(session, HostNode, node_id=node_id) or make.host_node(
            session, node_id, online=False, display_name=f"{prefix} host {n}",
            hypervisor=hypervisor, **size.offering()))
    storage = _first(session, StorageNode, node_id=f"sta.{prefix}1") or make.storage_node(
        session, f"sta.{prefix}1", online=False, ip_address="127.0.0.1",
        display_name=f"{prefix} storage 1")
    dc = _first(session, DcNetwork, name=f"{prefix}-dc") or make.dc_network(
        session, f"{prefix}-dc", description="seeded")
    # The outside network: a gateway and addresses, no DNS, DHCP or metadata server.
    nat = _first(session, Network, display_name=f"{prefix}-outside") or make.network(
        session, "198.51.100.0/24", dc=dc, display_name=f"{prefix}-outside", dns_server=None,
        dhcp_server=None, domain_name=None, metadata_server=None, metadata_server_port=None)
    inside = _first(session, Network, display_name=f"{prefix}-net") or make.network(
        session, "10.100.0.0/24", dc=dc, display_name=f"{prefix}-net",
        domain_name=f"{prefix}.local", nat_network_id=nat.id)
    macs = _first(session, MacRange, vendor_id=MAC_VENDOR, range_begin=1) or make.mac_range(
        session, MAC_VENDOR, description="seeded")
    backups = _first(session, BackupStorage, display_name=f"{prefix} backups") or \
        make.backup_storage(session, display_name=f"{prefix} backups")
    images = {}
    for kind, local in (("local", True), ("shared", False)):
        name = f"{prefix} {kind}-boot image"
        image = _first(session, Image, display_name=name) or make.image(
            session, local=local, is_public=True, display_name=name,
            backup_object=make.backup_object(session, backups, size=2 * GiB,
                                             source_volume_id=None,
                                             display_name=f"{name} backup"))
        images[kind] = image.canonical_uuid
    group = _first(session, SecurityGroup, display_name=f"{prefix} ssh") or \
        make.security_group(session, display_name=f"{prefix} ssh", description="seeded")
    return {
        "hosts": [h.canonical_uuid for h in host_rows],
        "host_node_ids": [h.node_id for h in host_rows],
        "storage_nodes": [storage.canonical_uuid], "storage_node_ids": [storage.node_id],
        "network": inside.canonical_uuid, "nat_network": nat.canonical_uuid,
        "mac_range": macs.canonical_uuid, "images": images,
        "security_group": group.canonical_uuid, "hypervisor": hypervisor,
    }
