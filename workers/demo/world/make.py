"""Builders for a small datacenter: used by the demo and by the tests.

Each builder adds rows to the session, flushes, and returns the new row. Defaults make a
working world; keyword arguments override any column.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from collector.ids import canonical, new_uuid
from collector.models import (
    BOOT_DEV_LOCAL,
    BOOT_DEV_SAN,
    ISCSI,
    LOCAL,
    NFS,
    Alarm,
    BackupObject,
    BackupStorage,
    DcNetwork,
    DhcpRange,
    HostNode,
    HostNodeGroup,
    Image,
    Instance,
    IpHandle,
    IpLease,
    IpPool,
    IscsiVolume,
    LoadBalancer,
    LoadBalancerInbound,
    LoadBalancerTarget,
    LocalVolume,
    MacLease,
    MacRange,
    Network,
    NetworkGroup,
    NetworkVif,
    NetworkVifIpLease,
    NfsVolume,
    NodeState,
    ResourceLabel,
    SecurityGroup,
    StorageNode,
    TagMapping,
    Volume,
)
from collector.models.networks import ipv4_to_i
from collector.scheduling import capacity
from collector.timeutil import utcnow

GiB = 1024**3
MAC_VENDOR = 0x525400
# MAC suffixes from a counter (random start): thousands of random 24-bit suffixes in one
# database would collide (birthday problem), and mac_leases is unique.
_mac_suffixes = itertools.count(secrets.randbits(23))


def _add(session: Session, row: Any) -> Any:
    session.add(row)
    session.flush()
    return row


def node_state(session: Session, node_id: str, state: str = "online") -> NodeState:
    return _add(session, NodeState(node_id=node_id, boot_token=secrets.token_hex(3),
                                   state=state, last_ping_at=utcnow()))


@dataclass(frozen=True)
class HostSize:
    """What a host offers: cores, memory and local disk (both in MB)."""

    cpu_cores: int
    memory_mb: int
    disk_mb: int

    @classmethod
    def slots(cls, n: int) -> HostSize:
        """Room for exactly ``n`` instances of 1 core, 1 GB and a 1 GiB disk."""
        return cls(n, n * 1024, n * 1024)

    def offering(self) -> dict[str, int]:
        """The host node's offering columns (``host_node(session, **size.offering())``)."""
        return {"offering_cpu_cores": self.cpu_cores, "offering_memory_size": self.memory_mb,
                "offering_disk_space_mb": self.disk_mb}


def host_node(session: Session, node_id: str | None = None, online: bool = True,
              **columns: Any) -> HostNode:
    node_id = node_id or f"hva.h{secrets.token_hex(4)}"
    columns = {"offering_cpu_cores": 16, "offering_memory_size": 32768,
               "offering_disk_space_mb": 500 * 1024, "hypervisor": "kvm", "arch": "x86_64",
               **columns}
    host = _add(session, HostNode(node_id=node_id, **columns))
    if online:
        node_state(session, node_id, "online")
    return host


def storage_node(session: Session, node_id: str | None = None, online: bool = True,
                 storage_type: str = ISCSI, **columns: Any) -> StorageNode:
    node_id = node_id or f"sta.s{secrets.token_hex(4)}"
    extra = {"ip_address": "192.0.2.10"} if storage_type == ISCSI else {"mount_point": "/export"}
    node = _add(session, StorageNode(node_id=node_id, storage_type=storage_type, **{
        "offering_disk_space_mb": 1024 * 1024, **extra, **columns}))
    if online:
        node_state(session, node_id, "online")
    return node


def backup_storage(session: Session, **columns: Any) -> BackupStorage:
    return _add(session, BackupStorage(**{"storage_type": "local",
                                          "base_uri": "file:///var/backups/", **columns}))


def backup_object(session: Session, storage: BackupStorage | None = None,
                  **columns: Any) -> BackupObject:
    storage = storage or backup_storage(session)
    bo = BackupObject(**{"backup_storage_id": storage.id, "size": 10 * GiB, "state": "available",
                         "progress": 100.0, "container_format": "raw",
                         "source_volume_id": "vol-00000000", **columns})
    _add(session, bo)
    if bo.object_key is None:
        bo.object_key = bo.canonical_uuid
    return bo


def image(session: Session, local: bool = True, **columns: Any) -> Image:
    bo = columns.pop("backup_object", None) or backup_object(session)
    return _add(session, Image(**{
        "boot_dev_type": BOOT_DEV_LOCAL if local else BOOT_DEV_SAN, "arch": "x86_64",
        "state": "available", "backup_object_id": bo.canonical_uuid, "features": {},
        "volumes": [], "vifs": [], "display_name": "demo image", **columns}))


def dc_network(session: Session, name: str | None = None, **columns: Any) -> DcNetwork:
    return _add(session, DcNetwork(**{"name": name or f"dcn{secrets.token_hex(8)}",
                                      "offering_network_modes": ["securitygroup"], **columns}))


def network(session: Session, cidr: str = "10.0.0.0/24", dc: DcNetwork | None = None,
            **columns: Any) -> Network:
    address, prefix = cidr.split("/")
    dc = dc or dc_network(session)
    base = ipv4_to_i(address)
    net = _add(session, Network(**{
        "ipv4_network": address, "prefix_len": int(prefix), "ipv4_gw": _ip(base + 1),
        "dns_server": _ip(base + 2), "dhcp_server": _ip(base + 2), "domain_name": "example.local",
        "metadata_server": _ip(base + 3), "metadata_server_port": 80,
        "dc_network_id": dc.id, "network_mode": "securitygroup", **columns}))
    size = 2 ** (32 - int(prefix))
    _add(session, DhcpRange(network_id=net.id, range_begin=base + 10, range_end=base + size - 2))
    return net


def mac_range(session: Session, vendor_id: int = MAC_VENDOR, range_begin: int = 1,
              range_end: int = 0xFF_FFFF, **columns: Any) -> MacRange:
    """The MAC addresses placement may give: ``vendor_id`` (24 bits) + device part in range."""
    return _add(session, MacRange(vendor_id=vendor_id, range_begin=range_begin,
                                  range_end=range_end, **columns))


def _ip(value: int) -> str:
    from collector.models.networks import ipv4_to_s

    return ipv4_to_s(value) or ""


def vif(session: Session, instance: Instance | None, net: Network | None, ipv4: str | None = None,
        security_groups: list[SecurityGroup] = (), device_index: int = 0,
        **columns: Any) -> NetworkVif:
    mac = (next(_mac_suffixes) & 0xFF_FFFF) | (0x525400 << 24)
    _add(session, MacLease(mac_addr=mac))
    row = _add(session, NetworkVif(
        instance_id=instance.id if instance else None, network_id=net.id if net else None,
        mac_addr=f"{mac:012x}", device_index=device_index, **columns))
    for group in security_groups:
        row.security_groups.append(group)
    if net is not None and ipv4 is not None:
        lease_ip(session, row, net, ipv4)
    session.flush()
    return row


def lease_ip(session: Session, row: NetworkVif | None, net: Network, ipv4: str,
             **columns: Any) -> NetworkVifIpLease:
    """``ipv4`` leased in ``net`` (guard row included), to the vif ``row`` if given."""
    value = ipv4_to_i(ipv4)
    _add(session, IpLease(network_id=net.id, ipv4=value, description=ipv4))
    return _add(session, NetworkVifIpLease(
        network_id=net.id, network_vif_id=row.id if row else None, ipv4=value,
        description=ipv4, **columns))


def ip_handle(session: Session, net: Network, ipv4: str, expires_at: Any = None,
              on: NetworkVif | None = None) -> IpHandle:
    """An IP reservation (pool, handle, leased address), on the vif ``on`` if given."""
    pool = _add(session, IpPool(display_name="reserved", expire_initial=3600))
    handle = _add(session, IpHandle(ip_pool_id=pool.id, expires_at=expires_at))
    lease_ip(session, on, net, ipv4, ip_handle_id=handle.id)
    return handle


def group(session: Session, members: list[Any], kind: str = "host",
          **columns: Any) -> HostNodeGroup | NetworkGroup:
    """A host node group (``kind`` "host") or network group ("network") of ``members``
    (rows), mapped in list order (``sort_index`` 0, 1, ...)."""
    cls = HostNodeGroup if kind == "host" else NetworkGroup
    row = _add(session, cls(**{"name": f"{kind}-group-{secrets.token_hex(4)}",
                               "account_id": "a-shpoolxx", **columns}))
    for n, member in enumerate(members):
        session.add(TagMapping(tag_id=row.id, uuid=member.canonical_uuid, sort_index=n))
    session.flush()
    return row


def security_group(session: Session, rule: str = "tcp:22,22,ip4:0.0.0.0",
                   **columns: Any) -> SecurityGroup:
    return _add(session, SecurityGroup(rule=rule, **columns))


def instance(session: Session, host: HostNode | None = None, img: Image | None = None,
             state: str = "running", **columns: Any) -> Instance:
    img = img or image(session)
    row = Instance(**{"image_id": img.id, "host_node_id": host.id if host else None,
                      "state": state, "status": "online", "cpu_cores": 1, "memory_size": 1024,
                      "account_id": "a-shpoolxx", "hypervisor": "kvm", **columns})
    _add(session, row)
    if row.hostname is None:
        row.hostname = row.uuid
    if host is not None and row.terminated_at is None:
        capacity.claim_host(session, host.id, row, 0, force=True)  # counters stay true
    return row


def awaiting_placement(session: Session, count: int, img: Image, net: Network | None = None,
                       disk: int = GiB, **columns: Any) -> list[str]:
    """``count`` instances waiting for placement as the API leaves them (``scheduling``, no
    host), each with a local boot volume of ``disk`` bytes to place and, given ``net``, one
    vif (eth0) on it; returns their canonical ids, in order. Written in bulk: a bench
    writes ten thousand."""
    vifs = {"eth0": {"network": net.canonical_uuid}} if net is not None else {}
    uuids = [new_uuid() for _ in range(count)]
    rows = [{"uuid": uuid, "hostname": uuid, "image_id": img.id, "state": "scheduling",
             "status": "init", "cpu_cores": 1, "memory_size": 1024, "account_id": "a-shpoolxx",
             "hypervisor": "kvm", "request_params": {"vifs": vifs}, **columns} for uuid in uuids]
    if not rows:
        return []
    created = session.execute(insert(Instance).returning(
        Instance.id, Instance.account_id, sort_by_parameter_order=True), rows).all()
    session.execute(insert(Volume), [
        {"size": disk, "state": "scheduling", "volume_type": LOCAL, "instance_id": row.id,
         "account_id": row.account_id} for row in created])
    return [canonical(Instance.prefix, uuid) for uuid in uuids]


def volume(session: Session, inst: Instance | None = None, kind: str | None = LOCAL,
           node: StorageNode | None = None, boot: bool = False, **columns: Any) -> Volume:
    row = _add(session, Volume(**{"size": 10 * GiB, "state": "attached" if inst else "available",
                                  "instance_id": inst.id if inst else None, "volume_type": kind,
                                  "account_id": "a-shpoolxx", **columns}))
    if kind == LOCAL:
        _add(session, LocalVolume(id=row.id, instance_id=inst.id, mount_label="instance",
                                  path=row.canonical_uuid))
        if row.deleted_at is None:
            capacity.reclaim_host(session, inst)  # the host now holds this disk too
    elif kind == ISCSI:
        _add(session, IscsiVolume(id=row.id, iscsi_storage_node_id=node.id,
                                  iqn=f"iqn.2010-09.jp.wakame:{row.canonical_uuid}", lun=0,
                                  path=row.canonical_uuid))
    elif kind == NFS:
        _add(session, NfsVolume(id=row.id, nfs_storage_node_id=node.id, path=row.canonical_uuid))
    if kind in (ISCSI, NFS) and row.deleted_at is None:
        capacity.claim_storage(session, node.id, row, force=True)
    if boot and inst is not None:
        inst.boot_volume_id = row.canonical_uuid
    return row


def alarm(session: Session, inst: Instance, metric_name: str = "log", **columns: Any) -> Alarm:
    params = {"match_pattern": "error", "tag": "var.log.messages"} if metric_name == "log" \
        else {"threshold": 80, "comparison_operator": "ge"}
    return _add(session, Alarm(**{"resource_id": inst.canonical_uuid, "metric_name": metric_name,
                                  "params": params, "notification_periods": 1,
                                  "evaluation_periods": 1, **columns}))


def running_instance(session: Session, host: HostNode | None = None,
                     storage: StorageNode | None = None, net: Network | None = None,
                     ipv4: str | None = "10.0.0.10") -> Instance:
    """An instance on ``host`` with a local boot volume, a shared data volume and one vif."""
    host = host or host_node(session)
    inst = instance(session, host)
    volume(session, inst, LOCAL, boot=True)
    volume(session, inst, ISCSI, node=storage or storage_node(session),
           guest_device_name="vdb")
    net = net or network(session)
    vif(session, inst, net, ipv4=ipv4)
    return inst


@dataclass
class LoadBalancedPair:
    """A load balancer (on ``lb_vm``) serving ``backend`` and ``other`` (the fallback)."""

    lb: LoadBalancer
    lb_vm: Instance
    backend: Instance
    other: Instance
    group: SecurityGroup  # the per-target group letting the balancer reach ``backend``


def load_balanced_pair(session: Session, host: HostNode | None = None,
                       cidr: str = "10.1.0.0/24") -> LoadBalancedPair:
    host = host or host_node(session)
    net = network(session, cidr)
    base = ipv4_to_i(net.ipv4_network)
    lb_vm = instance(session, host, service_type="lb")
    lb_vif = vif(session, lb_vm, net, ipv4=_ip(base + 5))
    lb = _add(session, LoadBalancer(instance_id=lb_vm.id, instance_port=80,
                                    instance_protocol="http"))
    session.add(LoadBalancerInbound(load_balancer_id=lb.id, protocol="http", port=80))
    backend = instance(session, host)
    backend_vif = vif(session, backend, net, ipv4=_ip(base + 20))
    other = instance(session, host)
    other_vif = vif(session, other, net, ipv4=_ip(base + 21))
    group = security_group(session, rule=f"tcp:80,80,ip4:{lb_vif.ip_leases[0].ipv4_s}")
    backend_vif.security_groups.append(group)
    session.add_all([
        LoadBalancerTarget(load_balancer_id=lb.id, network_vif_id=backend_vif.canonical_uuid),
        LoadBalancerTarget(load_balancer_id=lb.id, network_vif_id=other_vif.canonical_uuid,
                           fallback_mode="on"),
        ResourceLabel(resource_uuid=group.canonical_uuid, name=lb.label,
                      string_value=backend_vif.canonical_uuid),
    ])
    session.flush()
    return LoadBalancedPair(lb, lb_vm, backend, other, group)
