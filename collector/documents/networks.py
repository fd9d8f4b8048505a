"""Network, vif and network service documents from columns (``hva-collector.get_network``,
``get_networks``, ``get_nic``, and the vifs of ``get_instance``).

The pieces are selects and row readers that the documents combine: a document module
writes each select's WHERE for its own question (one vif, one network, the vifs of one
instance) and runs them together (``columns.fetch``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from collector import ids
from collector.db.compiled import Batch, Query, Shape, canonical
from collector.models import (
    DcNetwork,
    HostNode,
    Instance,
    Network,
    NetworkService,
    NetworkVif,
    NetworkVifIpLease,
    NetworkVifMonitor,
    NetworkVifSecurityGroup,
    SecurityGroup,
    VlanLease,
)
from collector.models.networks import ipv4_to_s, pretty_mac

NETWORKS = Network.__table__
DC_NETWORKS = DcNetwork.__table__
VLAN_LEASES = VlanLease.__table__
VIFS = NetworkVif.__table__
LEASES = NetworkVifIpLease.__table__
SERVICES = NetworkService.__table__
MONITORS = NetworkVifMonitor.__table__
VIF_GROUPS = NetworkVifSecurityGroup.__table__
GROUPS = SecurityGroup.__table__
INSTANCES = Instance.__table__
HOSTS = HostNode.__table__

NETWORK = Shape(Network)
DC_NETWORK = Shape(DcNetwork)
VLAN_LEASE = Shape(VlanLease)
VIF = Shape(NetworkVif)
SERVICE = Shape(NetworkService)
MONITOR = Shape(NetworkVifMonitor)

# A service's vif and that vif's instance, as the service document names them.
_SERVICE_VIFS = VIFS.alias("service_vifs")
_SERVICE_INSTANCES = INSTANCES.alias("service_instances")


def networks_select(where: ColumnElement[bool] | None) -> Query:
    """Networks with their DC network and its VLAN lease (every network when ``where`` is
    None); a DC network's first VLAN lease counts, as the ORM's single-row relation."""
    stmt = (select(*NETWORK.columns, *DC_NETWORK.columns, *VLAN_LEASE.columns)
            .select_from(NETWORKS.outerjoin(DC_NETWORKS,
                                            DC_NETWORKS.c.id == NETWORKS.c.dc_network_id)
                         .outerjoin(VLAN_LEASES,
                                    VLAN_LEASES.c.dc_network_id == DC_NETWORKS.c.id)))
    return Query(stmt if where is None else stmt.where(where),
                 order_by=(NETWORKS.c.id, VLAN_LEASES.c.id))


def services_select(network_ids: Select | None) -> Query:
    """Network services of the networks (every network when None), with what their
    documents say of their vif, in vif order."""
    stmt = (select(*SERVICE.columns, _SERVICE_VIFS.c.uuid, _SERVICE_VIFS.c.network_id,
                   _SERVICE_VIFS.c.nat_network_id, _SERVICE_VIFS.c.mac_addr,
                   _SERVICE_INSTANCES.c.uuid)
            .select_from(SERVICES.join(_SERVICE_VIFS,
                                       _SERVICE_VIFS.c.id == SERVICES.c.network_vif_id)
                         .outerjoin(_SERVICE_INSTANCES,
                                    _SERVICE_INSTANCES.c.id == _SERVICE_VIFS.c.instance_id)))
    return Query(stmt if network_ids is None else stmt.where(_on_networks(network_ids)),
                 order_by=(SERVICES.c.network_vif_id, SERVICES.c.id))


def _on_networks(network_ids: Select) -> ColumnElement[bool]:
    # "+ 0" keeps the planner off the index of network_vifs.network_id: services are few,
    # a network may have thousands of vifs; the query goes from the services to their vifs.
    return (_SERVICE_VIFS.c.network_id + 0).in_(network_ids)


def service_vif_ids(network_ids: Select | None) -> Select:
    """The vifs the services of those networks are on (their addresses are in the documents)."""
    stmt = select(SERVICES.c.network_vif_id).join(
        _SERVICE_VIFS, _SERVICE_VIFS.c.id == SERVICES.c.network_vif_id)
    return stmt if network_ids is None else stmt.where(_on_networks(network_ids))


def leases_select(vif_ids: Select) -> Query:
    """Every IP lease of those vifs (released ones too), oldest first."""
    return Query(select(LEASES.c.network_vif_id, LEASES.c.network_id, LEASES.c.ipv4,
                        LEASES.c.deleted_at.is_(None))
                 .where(LEASES.c.network_vif_id.in_(vif_ids)), order_by=(LEASES.c.id,))


def groups_select(vif_ids: Select) -> Query:
    """The security groups of those vifs, by group id."""
    return Query(select(VIF_GROUPS.c.network_vif_id, GROUPS.c.uuid)
                 .join(GROUPS, GROUPS.c.id == VIF_GROUPS.c.security_group_id)
                 .where(VIF_GROUPS.c.network_vif_id.in_(vif_ids)), order_by=(GROUPS.c.id,))


def monitors_select(vif_ids: Select) -> Query:
    """The alive monitors of those vifs."""
    return Query(select(*MONITOR.columns)
                 .where(MONITORS.c.network_vif_id.in_(vif_ids), MONITORS.c.deleted_at.is_(None)),
                 order_by=(MONITORS.c.id,))


class Leases:
    """IP leases of some vifs, oldest first: ``(network id, ipv4 int, alive)`` per vif."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self.by_vif: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
        for vif_id, network_id, ipv4, alive in rows:
            self.by_vif[vif_id].append((network_id, ipv4, bool(alive)))

    def first_alive(self, vif_id: int, network_id: int | None) -> str | None:
        """The vif's first alive address in that network (its own, or its NAT network)."""
        if network_id is None:
            return None
        for net, ipv4, alive in self.by_vif.get(vif_id, ()):
            if alive and net == network_id:
                return ipv4_to_s(ipv4)
        return None

    def addresses(self, vif_id: int, network_id: int | None) -> tuple[list[str], list[str]]:
        """Every address of the vif (released too): in its own network, in others (NAT)."""
        own, nat = [], []
        for net, ipv4, _alive in self.by_vif.get(vif_id, ()):
            (own if net == network_id else nat).append(ipv4_to_s(ipv4))
        return own, nat


def service_documents(rows: Iterable[Sequence[Any]], leases: Leases) -> dict[int, list[dict]]:
    """Network id -> the documents of its services."""
    out: dict[int, list[dict]] = defaultdict(list)
    width = SERVICE.width
    for row in rows:
        vif_uuid, network_id, nat_network_id, mac, instance_uuid = row[width:width + 5]
        doc = SERVICE.document(row)
        vif_id = doc["network_vif_id"]
        doc.update(network_vif_uuid=canonical(NetworkVif.prefix, vif_uuid),
                   network_id=network_id, address=leases.first_alive(vif_id, network_id),
                   nat_ip_lease=leases.first_alive(vif_id, nat_network_id),
                   mac_addr=pretty_mac(mac),
                   instance_uuid=canonical(Instance.prefix, instance_uuid))
        out[network_id].append(doc)
    return out


def network_documents(rows: Iterable[Sequence[Any]],
                      services: dict[int, list[dict]]) -> dict[int, dict[str, Any]]:
    """Network id -> its document (``network_services`` only of the networks in
    ``services``), in the order of the rows."""
    out: dict[int, dict[str, Any]] = {}
    dc_at = NETWORK.width
    vlan_at = dc_at + DC_NETWORK.width
    for row in rows:
        network_id = row[NETWORK.id_index]
        if network_id in out:
            continue  # a further VLAN lease of its DC network
        doc = NETWORK.document(row)
        doc["bandwidth_mark"] = network_id
        doc["description"] = doc["description"] or ""
        doc["network_services"] = services.get(network_id, [])
        if DC_NETWORK.present(row, dc_at):
            dc = DC_NETWORK.document(row, dc_at)
            if VLAN_LEASE.present(row, vlan_at):
                dc["vlan_lease"] = VLAN_LEASE.document(row, vlan_at)
            doc["dc_network"] = dc
        out[network_id] = doc
    return out


def group_names(rows: Iterable[Sequence[Any]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for vif_id, uuid in rows:
        out[vif_id].append(canonical(SecurityGroup.prefix, uuid))
    return out


def monitor_documents(rows: Iterable[Sequence[Any]]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        doc = MONITOR.document(row)
        out[doc["network_vif_id"]].append(doc)
    return out


def vif_document(doc: dict[str, Any], leases: Leases, *, instance_uuid: str | None,
                 host_node_id: str | None, network: dict[str, Any] | None,
                 groups: list[str], monitors: list[dict]) -> dict[str, Any]:
    """A vif's document from its columns (``doc``, completed in place)."""
    vif_id = doc["id"]
    doc.update(address=leases.first_alive(vif_id, doc["network_id"]),
               nat_ip_lease=leases.first_alive(vif_id, doc["nat_network_id"]),
               instance_uuid=instance_uuid, host_node_id=host_node_id,
               network_id=doc["network_id"], network=network, security_groups=groups,
               network_vif_monitors=monitors)
    return doc


# get_nic of a vif: the vif with its instance and host, its network's services, and the
# leases of both.
_NIC_VIF_ID = select(VIFS.c.id).where(VIFS.c.uuid == bindparam("raw"))
_NIC_NETWORK_IDS = select(VIFS.c.network_id).where(VIFS.c.uuid == bindparam("raw"))
_NIC_VIF = Query(select(*VIF.columns, INSTANCES.c.uuid.label("instance_uuid"), HOSTS.c.node_id)
                 .select_from(VIFS.outerjoin(INSTANCES, INSTANCES.c.id == VIFS.c.instance_id)
                              .outerjoin(HOSTS, HOSTS.c.id == INSTANCES.c.host_node_id))
                 .where(VIFS.c.uuid == bindparam("raw")))
_NIC = Batch(
    _NIC_VIF,
    networks_select(NETWORKS.c.id.in_(_NIC_NETWORK_IDS)),
    services_select(_NIC_NETWORK_IDS),
    leases_select(_NIC_VIF_ID.union_all(service_vif_ids(_NIC_NETWORK_IDS))),
    groups_select(_NIC_VIF_ID),
    monitors_select(_NIC_VIF_ID),
)


def nic_document(session: Session, nic_uuid: str) -> dict[str, Any] | None:
    """The document of the vif ``nic_uuid`` (``vif-...``), None when there is none."""
    params = {"raw": ids.raw_part(nic_uuid, NetworkVif.prefix)}
    vifs, networks, services, lease_rows, groups, monitors = _NIC.fetch(session, params)
    if not vifs:
        return None
    row = vifs[0]
    leases = Leases(lease_rows)
    nets = network_documents(networks, service_documents(services, leases))
    doc = VIF.document(row)
    instance_uuid, node_id = row[VIF.width:VIF.width + 2]
    return vif_document(doc, leases, instance_uuid=canonical(Instance.prefix, instance_uuid),
                        host_node_id=node_id, network=nets.get(doc["network_id"]),
                        groups=group_names(groups).get(doc["id"], []),
                        monitors=monitor_documents(monitors).get(doc["id"], []))


# get_network / get_networks: networks with the services on them.
_ONE_NETWORK_ID = select(NETWORKS.c.id).where(NETWORKS.c.uuid == bindparam("raw"))
_NETWORK = Batch(
    networks_select(NETWORKS.c.uuid == bindparam("raw")),
    services_select(_ONE_NETWORK_ID),
    leases_select(service_vif_ids(_ONE_NETWORK_ID)),
)
_ALL_NETWORKS = Batch(
    networks_select(None),
    services_select(None),
    leases_select(service_vif_ids(None)),
)


def network_document(session: Session, network_id: str) -> dict[str, Any] | None:
    """The document of the network ``network_id`` (``nw-...``), None when there is none."""
    params = {"raw": ids.raw_part(network_id, Network.prefix)}
    found = _networks(session, _NETWORK, params)
    return found[0] if found else None


def all_network_documents(session: Session) -> list[dict[str, Any]]:
    return _networks(session, _ALL_NETWORKS, {})


def _networks(session: Session, batch: Batch, params: dict[str, Any]) -> list[dict[str, Any]]:
    networks, services, lease_rows = batch.fetch(session, params)
    return list(network_documents(networks, service_documents(services,
                                                              Leases(lease_rows))).values())
