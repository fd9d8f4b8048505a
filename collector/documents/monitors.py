"""What a host's monitors watch, from columns (``hva-collector.get_instance_monitor_data``,
``get_resource_monitor_data``, ``get_resource_monitor_ids``). Each answer is a fixed
number of selects, sent together, whatever the number of instances and vifs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from collector.db.compiled import Batch, Query, canonical, fetch, iso_time
from collector.errors import UnknownNodeID
from collector.models import HostNode, Instance, Network, NetworkVif, NetworkVifIpLease
from collector.models.networks import ipv4_to_s

INSTANCE_MONITOR_STATES = ("running", "halting", "shuttingdown")
MONITORED_STATES = ("starting", "running", "halting", "shuttingdown")

_HOSTS, _INSTANCES = HostNode.__table__, Instance.__table__
_VIFS, _NETWORKS, _LEASES = NetworkVif.__table__, Network.__table__, NetworkVifIpLease.__table__
_NODE = bindparam("node_id")


def _instances_on_host(columns: list, states: tuple[str, ...]) -> Query:
    """The host (a row with NULL instance columns when nothing is on it; no row when there
    is no such host) joined with its instances in those states, by instance id."""
    return Query(select(_HOSTS.c.hypervisor, *columns).select_from(_HOSTS.outerjoin(
        _INSTANCES, and_(_INSTANCES.c.host_node_id == _HOSTS.c.id,
                         _INSTANCES.c.state.in_(states))))
        .where(_HOSTS.c.node_id == _NODE), order_by=(_INSTANCES.c.id,))


def _found(rows: list[tuple], node_id: str) -> list[tuple]:
    if not rows:
        raise UnknownNodeID(f"unknown host node with node id {node_id!r}")
    return [row for row in rows if row[1] is not None]


_INSTANCE_MONITOR = _instances_on_host(
    [_INSTANCES.c.uuid, _INSTANCES.c.status, _INSTANCES.c.state, _INSTANCES.c.created_at,
     _INSTANCES.c.updated_at], INSTANCE_MONITOR_STATES)


def instance_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    [rows] = fetch(session, (_INSTANCE_MONITOR, {"node_id": node_id}))
    return [{"uuid": canonical(Instance.prefix, uuid), "hypervisor": hypervisor,
             "status": status, "state": state, "created_at": iso_time(created),
             "updated_at": iso_time(updated)}
            for hypervisor, uuid, status, state, created, updated in _found(rows, node_id)]


_MONITORED = _instances_on_host(
    [_INSTANCES.c.id, _INSTANCES.c.uuid, _INSTANCES.c.status, _INSTANCES.c.state],
    MONITORED_STATES)
_MONITORED_IDS = (select(_INSTANCES.c.id).join(_HOSTS, _HOSTS.c.id == _INSTANCES.c.host_node_id)
                  .where(_HOSTS.c.node_id == _NODE, _INSTANCES.c.state.in_(MONITORED_STATES)))
_MONITORED_VIFS = (_VIFS.c.instance_id.in_(_MONITORED_IDS), _VIFS.c.deleted_at.is_(None))
_RESOURCE_MONITOR = Batch(
    _MONITORED,
    Query(select(_VIFS.c.id, _VIFS.c.uuid, _VIFS.c.instance_id, _VIFS.c.network_id,
                 _VIFS.c.nat_network_id, _NETWORKS.c.uuid.label("network_uuid"))
          .select_from(_VIFS.outerjoin(_NETWORKS, _NETWORKS.c.id == _VIFS.c.network_id))
          .where(*_MONITORED_VIFS), order_by=(_VIFS.c.device_index, _VIFS.c.id)),
    Query(select(_LEASES.c.network_vif_id, _LEASES.c.network_id, _LEASES.c.ipv4)
          .where(_LEASES.c.network_vif_id.in_(select(_VIFS.c.id).where(*_MONITORED_VIFS)),
                 _LEASES.c.deleted_at.is_(None)), order_by=(_LEASES.c.id,)),
)


def resource_monitor_data(session: Session, node_id: str) -> list[dict[str, Any]]:
    instances, vif_rows, lease_rows = _RESOURCE_MONITOR.fetch(session, {"node_id": node_id})
    instances = _found(instances, node_id)
    leases: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for vif_id, network_id, ipv4 in lease_rows:
        leases[vif_id].append((network_id, ipv4))

    def first_in(vif_id: int, network_id: int | None) -> str | None:
        if network_id is None:
            return None
        return next((ipv4_to_s(ip) for net, ip in leases.get(vif_id, ()) if net == network_id),
                    None)

    vifs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vif_id, uuid, instance_id, network_id, nat_network_id, network_uuid in vif_rows:
        entry: dict[str, Any] = {"vif_id": canonical(NetworkVif.prefix, uuid),
                                 "network_id": canonical(Network.prefix, network_uuid)}
        address = first_in(vif_id, network_id)
        if address is not None:
            entry["ipv4"] = {"address": address,
                             "nat_address": first_in(vif_id, nat_network_id)}
        vifs[instance_id].append(entry)
    return [{"uuid": canonical(Instance.prefix, uuid), "status": status, "state": state,
             "vif": vifs.get(pk, [])} for _hypervisor, pk, uuid, status, state in instances]


def resource_monitor_ids(session: Session, node_id: str) -> list[str]:
    [rows] = fetch(session, (_MONITORED, {"node_id": node_id}))
    return [canonical(Instance.prefix, row[2]) for row in _found(rows, node_id)]
