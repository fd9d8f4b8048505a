"""Vif placement: the ``vifs`` request parameter turned into vifs with MAC and IP leases.

A network strategy plans (pure: ``plan(vifs, request_params) -> [VifPlan]``, the strategies
are in ``strategies/network.py``); ``build_vifs`` then creates the vifs, their MAC leases (MAC
strategy, which may read the instance's host) and their IP leases (IP strategy: the vif's
network, and its NAT network from the NAT network itself, S15). A plan naming a network
group is resolved here: its member networks are tried in the plan's order until one has a
free address.

``vifs`` (spec 4.2.1): a map of vif name -> map with optional ``index``, ``network``,
``nat_network``, ``security_groups`` (id or list), ``mac_addr``, ``ipv4_addr``,
``nat_ipv4_addr``, ``monitors``. An empty map gives no vif.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.errors import (
    CollectorError,
    DuplicateIPAddress,
    DuplicateMacAddress,
    InvalidParameter,
    NetworkSchedulingError,
    OutOfIpRange,
    UnknownGroup,
    UnknownNetworkID,
)
from collector.models import (
    Instance,
    IpLease,
    Network,
    NetworkGroup,
    NetworkVif,
    NetworkVifMonitor,
    SecurityGroup,
    TagMapping,
)
from collector.scheduling import batch_memo
from collector.scheduling.candidates import ALL_NETWORKS, GroupMember, VifPlan
from collector.scheduling.placement_config import ServiceTypeConfig, scheduler_config
from collector.scheduling.strategies import ip_address, mac_address
from collector.scheduling.strategies.network import (  # re-exported: callers plan through here
    PerInstance,
    VifsRequestParam,
    check_vifs,
    order_members,
    plan_request_vifs,
    security_group_ids,
)

__all__ = ["PerInstance", "VifsRequestParam", "build_vifs", "check_manual_addresses",
           "check_vifs", "create_vifs", "parse_vifs", "plan_request_vifs"]

MONITOR_KEYS = ("protocol", "title", "enabled", "params")


def parse_vifs(value: object) -> dict[str, dict[str, Any]]:
    """The API's check of ``vifs``: absent -> {}, JSON text parsed; InvalidParameter."""
    return check_vifs(value, InvalidParameter)


def _by_cuuid(session: Session, cls: Any, cuuids: set[str]) -> dict[str, Any]:
    raws = [ids.raw_part(c, cls.prefix) for c in cuuids]
    return {row.canonical_uuid: row
            for row in session.scalars(select(cls).where(cls.uuid.in_(raws)))} if raws else {}


def _monitors(spec: object) -> list[dict[str, Any]]:
    items = list(spec.values()) if isinstance(spec, dict) else spec
    if not isinstance(items, list):
        return []
    return [{k: m[k] for k in MONITOR_KEYS if k in m} for m in items if isinstance(m, dict)]


def group_members(session: Session, plans: Sequence[VifPlan]) -> dict[str, list[GroupMember]]:
    """The member networks of every group the plans name (UnknownGroup if one does not
    exist). ALL_NETWORKS is the network with the lowest id."""
    out: dict[str, list[GroupMember]] = {}
    for group in sorted({p.network_group for p in plans if p.network_group}):
        if group == ALL_NETWORKS:
            first = session.execute(select(Network.id, Network.uuid).order_by(Network.id)
                                    .limit(1)).first()
            if first is None:
                raise NetworkSchedulingError("no network exists")
            out[group] = [GroupMember(f"nw-{first.uuid}", first.id)]
            continue
        tag = session.scalar(select(NetworkGroup.id).where(
            NetworkGroup.uuid == ids.raw_part(group, NetworkGroup.prefix)))
        if tag is None:
            raise UnknownGroup(f"Unknown network group: {group}")
        order = dict(session.execute(select(TagMapping.uuid, TagMapping.sort_index)
                                     .where(TagMapping.tag_id == tag)).all())
        raws = [ids.split(c)[1] for c in order if c.startswith(f"{Network.prefix}-")]
        out[group] = [GroupMember(f"nw-{row.uuid}", row.id, order[f"nw-{row.uuid}"])
                      for row in session.execute(select(Network.id, Network.uuid)
                                                 .where(Network.uuid.in_(raws)))]
    return out


def _lease_in_group(session: Session, vif: NetworkVif, plan: VifPlan,
                    members: list[GroupMember], networks: dict[str, Network],
                    service_type: ServiceTypeConfig) -> None:
    """The first member (in the plan's order) with a free address; one vif whatever the
    tries (OutOfIpRange writes nothing, so a failed try leaves nothing behind)."""
    if plan.group_order == "least_allocation":
        taken = dict(session.execute(
            select(IpLease.network_id, func.count()).where(
                IpLease.network_id.in_([m.id for m in members]))
            .group_by(IpLease.network_id)).all())
        members = [replace(m, allocated=int(taken.get(m.id, 0))) for m in members]
    for member in order_members(members, plan.group_order):
        try:
            service_type.ip_address.allocate(session, networks[member.network], vif, None,
                                             cursor_locked=True)
        except OutOfIpRange:
            continue
        vif.network_id = member.id
        return
    raise OutOfIpRange(f"No available ip addresses left in network group "
                       f"'{plan.network_group}'.")


def build_vifs(session: Session, instance: Instance, plans: Sequence[VifPlan],
               service_type: ServiceTypeConfig,
               request_params: Mapping[str, Any] | None = None,
               vendor_id: str | None = None) -> list[NetworkVif]:
    """Create the planned vifs with their MAC and IP leases (in the caller's transaction)."""
    request_params = request_params or {}
    members = group_members(session, plans)
    wanted = {n for p in plans for n in (p.network, p.nat_network) if n}
    wanted |= {m.network for group in members.values() for m in group}
    # Locked before any MAC range (one lock order for every placement).
    networks = {n.canonical_uuid: n for n in ip_address.lock_networks(
        session, raw_uuids=[ids.raw_part(c, Network.prefix) for c in wanted])} if wanted else {}
    for plan in plans:
        for cuuid in (plan.network, plan.nat_network):
            if cuuid and cuuid not in networks:
                raise NetworkSchedulingError(f"Network '{cuuid}' doesn't exist.")
    fallback_groups = security_group_ids(request_params.get("security_groups"))
    group_ids = {g for p in plans for g in (p.security_groups or fallback_groups)}
    try:
        groups = _by_cuuid(session, SecurityGroup, group_ids)
    except CollectorError as exc:
        raise NetworkSchedulingError(f"bad security group id: {exc}") from None
    unknown = sorted(group_ids - set(groups))
    if unknown:
        raise NetworkSchedulingError(f"Unknown security group: {unknown[0]}")
    ordered = sorted(plans, key=lambda p: p.index)
    vifs = []
    for plan in ordered:
        mac = service_type.mac_address.allocate(session, plan.mac_addr, vendor_id,
                                                host_node_id=instance.host_node_id)
        net, nat = networks.get(plan.network or ""), networks.get(plan.nat_network or "")
        vif = NetworkVif(account_id=instance.account_id, instance_id=instance.id,
                         network_id=net.id if net else None, nat_network_id=nat.id if nat else None,
                         mac_addr=mac_address.mac_text(mac), device_index=plan.index)
        vif.security_groups = [groups[g] for g in (plan.security_groups or fallback_groups)]
        session.add(vif)
        vifs.append(vif)
    if batch_memo.memo(session) is None:
        session.flush()  # a batch flushes the vifs of all its instances at once
    vif_specs = (request_params.get("vifs") or {}) if isinstance(request_params, dict) else {}
    for plan, vif in zip(ordered, vifs, strict=True):
        if plan.network_group:
            _lease_in_group(session, vif, plan, members[plan.network_group], networks,
                            service_type)
        if plan.network and (plan.ipv4_addr or plan.auto_address):
            service_type.ip_address.allocate(session, networks[plan.network], vif,
                                             plan.ipv4_addr, cursor_locked=True)
        if plan.nat_network and (plan.nat_ipv4_addr or plan.auto_address):
            service_type.ip_address.allocate(session, networks[plan.nat_network], vif,
                                             plan.nat_ipv4_addr, cursor_locked=True)
        spec = vif_specs.get(plan.name) if isinstance(vif_specs, dict) else None
        for monitor in _monitors(spec.get("monitors") if isinstance(spec, dict) else None):
            params = dict(monitor.get("params") or {})
            if "protocol" in monitor:
                params["protocol"] = monitor["protocol"]
            session.add(NetworkVifMonitor(network_vif=vif, title=monitor.get("title"),
                                          enabled=bool(monitor.get("enabled", True)),
                                          params=params))
    session.expire(instance, ["network_vifs"])  # the vifs were added by foreign key
    return vifs


def create_vifs(session: Session, instance: Instance, service_type: str | None = None
                ) -> list[NetworkVif]:
    """The instance's vifs from its ``request_params["vifs"]`` by its service type's network
    strategy (requested MACs and addresses honoured, the rest allocated)."""
    config = scheduler_config()
    st = config.service_type(service_type or instance.service_type)
    request_params = instance.request_params or {}
    vifs = check_vifs(request_params.get("vifs"), NetworkSchedulingError)
    plans = st.network.plan(vifs, request_params)
    return build_vifs(session, instance, plans, st, request_params,
                      config.mac_address_vendor_id)


def check_manual_addresses(session: Session, vifs: Mapping[str, dict[str, Any]]) -> None:
    """Every requested MAC and IP address of ``vifs`` (already parsed), nothing written."""
    macs: set[int] = set()
    addresses: set[tuple[int, int]] = set()
    for spec in vifs.values():
        if spec.get("mac_addr") not in (None, ""):
            mac = mac_address.check_manual_mac(session, spec["mac_addr"])
            if mac in macs:
                raise DuplicateMacAddress(f"MAC address {spec['mac_addr']} is requested twice")
            macs.add(mac)
        for addr_key, net_key in (("ipv4_addr", "network"), ("nat_ipv4_addr", "nat_network")):
            if spec.get(addr_key) in (None, ""):
                continue
            if not spec.get(net_key):
                raise UnknownNetworkID(f"{addr_key} needs a {net_key}")
            net = Network.by_cuuid(session, spec[net_key])
            value = ip_address.check_manual_ip(session, net, spec[addr_key])
            if (net.id, value) in addresses:
                raise DuplicateIPAddress(f"IP Address is requested twice: {spec[addr_key]}")
            addresses.add((net.id, value))
