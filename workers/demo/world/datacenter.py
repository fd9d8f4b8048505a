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

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import (
    BOOT_DEV_LOCAL,
    BOOT_DEV_SAN,
    ISCSI,
    BackupObject,
    BackupStorage,
    DcNetwork,
    DhcpRange,
    HostNode,
    Image,
    MacRange,
    Network,
    SecurityGroup,
    StorageNode,
)
from collector.models.networks import ipv4_to_i

GiB = 1024**3
MAC_VENDOR = 0x525400


@dataclass(frozen=True)
class HostSize:
    cpu_cores: int
    memory_mb: int
    disk_mb: int


# Two sizes, alternating: hva.<prefix>1 large, hva.<prefix>2 small, ...
HOST_SIZES = (HostSize(8, 16384, 200 * 1024), HostSize(4, 8192, 100 * 1024))


def _first(session: Session, model: type, **where: Any) -> Any:
    stmt = select(model).filter_by(**where).order_by(model.id).limit(1)
    return session.scalars(stmt).first()


def _get_or_add(session: Session, model: type, where: dict[str, Any],
                values: dict[str, Any] | None = None) -> Any:
    row = _first(session, model, **where)
    if row is None:
        row = model(**where, **(values or {}))
        session.add(row)
        session.flush()
    return row


def _network(session: Session, name: str, cidr: str, dc: DcNetwork,
             **values: Any) -> Network:
    address, prefix = cidr.split("/")
    base = ipv4_to_i(address)
    net = _first(session, Network, display_name=name)
    if net is None:
        net = Network(display_name=name, ipv4_network=address, prefix_len=int(prefix),
                      dc_network_id=dc.id, network_mode="securitygroup", **values)
        session.add(net)
        session.flush()
        size = 2 ** (32 - int(prefix))
        session.add(DhcpRange(network_id=net.id, range_begin=base + 10,
                              range_end=base + size - 2))
        session.flush()
    return net


def _ip(base: str, last: int) -> str:
    return base.rsplit(".", 1)[0] + f".{last}"


def seed_datacenter(session: Session, hosts: int = 4, prefix: str = "demo",
                    hypervisor: str = "kvm") -> dict[str, Any]:
    """Write (or complete) the datacenter; returns the canonical ids of what it holds."""
    if not 1 <= hosts <= 1000:
        from collector.errors import InvalidArgument

        raise InvalidArgument("hosts must be between 1 and 1000")
    host_rows = []
    for n in range(1, hosts + 1):
        size = HOST_SIZES[(n - 1) % len(HOST_SIZES)]
        host_rows.append(_get_or_add(
            session, HostNode, {"node_id": f"hva.{prefix}{n}"},
            {"display_name": f"{prefix} host {n}", "arch": "x86_64", "hypervisor": hypervisor,
             "offering_cpu_cores": size.cpu_cores, "offering_memory_size": size.memory_mb,
             "offering_disk_space_mb": size.disk_mb}))
    storage = _get_or_add(session, StorageNode, {"node_id": f"sta.{prefix}1"},
                          {"storage_type": ISCSI, "ip_address": "127.0.0.1",
                           "offering_disk_space_mb": 1024 * 1024,
                           "display_name": f"{prefix} storage 1"})
    dc = _get_or_add(session, DcNetwork, {"name": f"{prefix}-dc"},
                     {"offering_network_modes": ["securitygroup"], "description": "seeded"})
    nat = _network(session, f"{prefix}-outside", "198.51.100.0/24", dc,
                   ipv4_gw="198.51.100.1")
    inside = _network(session, f"{prefix}-net", "10.100.0.0/24", dc,
                      ipv4_gw=_ip("10.100.0.0", 1), dns_server=_ip("10.100.0.0", 2),
                      dhcp_server=_ip("10.100.0.0", 2), metadata_server=_ip("10.100.0.0", 3),
                      metadata_server_port=80, domain_name=f"{prefix}.local",
                      nat_network_id=nat.id)
    macs = _get_or_add(session, MacRange, {"vendor_id": MAC_VENDOR, "range_begin": 1},
                       {"range_end": 0xFFFFFF, "description": "seeded"})
    backups = _get_or_add(session, BackupStorage, {"display_name": f"{prefix} backups"},
                          {"storage_type": "local", "base_uri": "file:///var/backups/"})
    images = {}
    for kind, boot in (("local", BOOT_DEV_LOCAL), ("shared", BOOT_DEV_SAN)):
        name = f"{prefix} {kind}-boot image"
        image = _first(session, Image, display_name=name)
        if image is None:
            bo = BackupObject(backup_storage_id=backups.id, size=2 * GiB, state="available",
                              progress=100.0, container_format="raw",
                              display_name=f"{name} backup")
            session.add(bo)
            session.flush()
            bo.object_key = bo.canonical_uuid
            image = Image(boot_dev_type=boot, arch="x86_64", state="available", is_public=True,
                          backup_object_id=bo.canonical_uuid, features={}, volumes=[],
                          vifs=[], display_name=name)
            session.add(image)
            session.flush()
        images[kind] = image.canonical_uuid
    group = _get_or_add(session, SecurityGroup, {"display_name": f"{prefix} ssh"},
                        {"rule": "tcp:22,22,ip4:0.0.0.0", "description": "seeded"})
    return {
        "hosts": [h.canonical_uuid for h in host_rows],
        "host_node_ids": [h.node_id for h in host_rows],
        "storage_nodes": [storage.canonical_uuid], "storage_node_ids": [storage.node_id],
        "network": inside.canonical_uuid, "nat_network": nat.canonical_uuid,
        "mac_range": macs.canonical_uuid, "images": images,
        "security_group": group.canonical_uuid, "hypervisor": hypervisor,
    }
