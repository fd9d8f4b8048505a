"""The API's documents of instances and volumes (the original's ``to_api_document``).

Compact and by canonical id: what an operator or a client of ``api.*`` needs to follow a
resource (state, where it runs, its addresses and volumes, why a placement failed), not
the agents' full documents of ``hva-collector.get_instance``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload, selectinload

from collector.db import EAGER_CHUNK
from collector.documents.resources import direct_address, nat_address
from collector.models import (
    HostNode,
    Instance,
    IscsiVolume,
    NetworkVif,
    NfsVolume,
    StorageNode,
    Volume,
)
from collector.models.networks import pretty_mac
from collector.timeutil import to_iso

_VOLUME_LOADS = (  # volume_device reads all three device relations
    joinedload(Volume.local_volume),
    joinedload(Volume.iscsi_volume).joinedload(IscsiVolume.storage_node),
    joinedload(Volume.nfs_volume).joinedload(NfsVolume.storage_node),
)
INSTANCE_LOADS = (
    joinedload(Instance.image),
    joinedload(Instance.ssh_key_pair),
    joinedload(Instance.host_node),
    selectinload(Instance.network_vifs, chunksize=EAGER_CHUNK).options(
        selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK),
        joinedload(NetworkVif.network), joinedload(NetworkVif.nat_network),
        selectinload(NetworkVif.security_groups, chunksize=EAGER_CHUNK)),
    selectinload(Instance.volumes, chunksize=EAGER_CHUNK).options(*_VOLUME_LOADS),
)
VOLUME_LOADS = (*_VOLUME_LOADS, joinedload(Volume.instance).joinedload(Instance.host_node))


def _cuuid(row: Any) -> str | None:
    return row.canonical_uuid if row is not None else None


def instances_query() -> Select:
    """Instances with everything their documents read."""
    return select(Instance).options(*INSTANCE_LOADS)


def volumes_query() -> Select:
    return select(Volume).options(*VOLUME_LOADS)


def instance_api_document(inst: Instance) -> dict[str, Any]:
    host: HostNode | None = inst.host_node
    vifs = [v for v in inst.network_vifs if v.deleted_at is None or inst.terminated_at]
    return {
        "id": inst.canonical_uuid,
        "account_id": inst.account_id,
        "state": inst.state,
        "status": inst.status,
        "host_node": _cuuid(host),
        "node_id": host.node_id if host is not None else None,
        "image_id": inst.image.canonical_uuid,
        "arch": inst.image.arch,
        "hypervisor": inst.hypervisor,
        "cpu_cores": inst.cpu_cores,
        "memory_size": inst.memory_size,
        "quota_weight": inst.quota_weight,
        "hostname": inst.hostname,
        "display_name": inst.display_name,
        "service_type": inst.service_type,
        "ha_enabled": inst.ha_enabled == 1,
        "ssh_key_pair": _cuuid(inst.ssh_key_pair),
        "boot_volume_id": inst.boot_volume_id,
        "placement_error": inst.placement_error,
        "vif": [_vif(v) for v in vifs],
        "volume": [_instance_volume(v, inst) for v in inst.volumes],
        "created_at": to_iso(inst.created_at),
        "updated_at": to_iso(inst.updated_at),
        "terminated_at": to_iso(inst.terminated_at),
    }


def _vif(v: NetworkVif) -> dict[str, Any]:
    return {
        "vif_id": v.canonical_uuid,
        "device_index": v.device_index,
        "mac_addr": pretty_mac(v.mac_addr),
        "network_id": _cuuid(v.network),
        "ipv4_addr": direct_address(v),
        "nat_network_id": _cuuid(v.nat_network),
        "nat_ipv4_addr": nat_address(v),
        "security_groups": [g.canonical_uuid for g in v.security_groups],
    }


def _instance_volume(vol: Volume, inst: Instance) -> dict[str, Any]:
    return {
        "vol_id": vol.canonical_uuid,
        "state": vol.state,
        "size": vol.size,
        "volume_type": vol.volume_type,
        "boot": vol.canonical_uuid == inst.boot_volume_id,
    }


def storage_of(vol: Volume) -> HostNode | StorageNode | None:
    """Where the volume lives: its storage node, or the instance's host for a local one."""
    device = vol.volume_device
    if device is None:
        return None
    if vol.is_local_volume:
        return vol.instance.host_node if vol.instance is not None else None
    return device.storage_node


def volume_api_document(vol: Volume) -> dict[str, Any]:
    node = storage_of(vol)
    return {
        "id": vol.canonical_uuid,
        "account_id": vol.account_id,
        "state": vol.state,
        "status": vol.status,
        "size": vol.size,
        "volume_type": vol.volume_type,
        "storage_node": _cuuid(node),
        "node_id": node.node_id if node is not None else None,
        "instance_id": _cuuid(vol.instance),
        "backup_object_id": vol.backup_object_id,
        "display_name": vol.display_name,
        "service_type": vol.service_type,
        "placement_error": vol.placement_error,
        "created_at": to_iso(vol.created_at),
        "updated_at": to_iso(vol.updated_at),
        "deleted_at": to_iso(vol.deleted_at),
    }
