"""Vif placement: the ``vifs`` request parameter turned into vifs with MAC and IP leases.

A network strategy plans (pure: ``plan(vifs, request_params) -> [VifPlan]``); ``build_vifs``
then creates the vifs, their MAC leases (MAC strategy) and their IP leases (IP strategy:
the vif's network, and its NAT network from the NAT network itself, S15).

``vifs`` (spec 4.2.1): a map of vif name -> map with optional ``index``, ``network``,
``nat_network``, ``security_groups`` (id or list), ``mac_addr``, ``ipv4_addr``,
``nat_ipv4_addr``, ``monitors``. An empty map gives no vif.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import ids
from collector.errors import (
    CollectorError,
    DuplicateIPAddress,
    DuplicateMacAddress,
    InvalidParameter,
    NetworkSchedulingError,
    SchedulerConfigError,
    UnknownNetworkID,
)
from collector.models import Instance, Network, NetworkVif, NetworkVifMonitor, SecurityGroup
from collector.scheduling import ip_address, mac_address, registry
from collector.scheduling.snapshot import VifPlan

MONITOR_KEYS = ("protocol", "title", "enabled", "params")


def _check_vifs(value: object, error: type[CollectorError]) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise error("Missing or badly formatted vifs request parameter") from None
    if not isinstance(value, dict):
        raise error("Missing or badly formatted vifs request parameter")
    for name, spec in value.items():
        if not isinstance(name, str) or not name:
            raise error(f"{name!r} is not a valid vif name")
        if not isinstance(spec, dict):
            raise error(f"{spec!r} is not a valid vif template")
    return value


def parse_vifs(value: object) -> dict[str, dict[str, Any]]:
    """The API's check of ``vifs``: absent -> {}, JSON text parsed; InvalidParameter."""
    return _check_vifs(value, InvalidParameter)


def _network_id(name: str, key: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    try:
        ids.raw_part(value, Network.prefix)
    except CollectorError:
        raise NetworkSchedulingError(f"vif {name}: malformed {key} id {value!r}") from None
    return str(value)


def _index(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise NetworkSchedulingError(f"vif {name}: index must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (value == "" or value.strip().isdigit()):
        return int(value or 0)  # the original read "" as 0
    raise NetworkSchedulingError(f"vif {name}: index must be an integer, got {value!r}")


def _text(name: str, key: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NetworkSchedulingError(f"vif {name}: {key} must be a string")
    return value


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(g for g in value if isinstance(g, str) and g.strip())  # blanks dropped (S23)


def plan_request_vifs(vifs: Mapping[str, dict[str, Any]]) -> list[VifPlan]:
    """VifsRequestParam (spec 4.2.3): request order, index = given or a running counter."""
    plans, counter, seen = [], 0, set()
    for name, spec in vifs.items():
        index = _index(name, spec["index"]) if spec.get("index") is not None else counter
        if index in seen:  # S22: two vifs on one device index
            raise NetworkSchedulingError(f"vif {name}: device index {index} is used twice")
        seen.add(index)
        counter = max(counter, index) + 1
        plans.append(VifPlan(
            name=name, index=index, network=_network_id(name, "network", spec.get("network")),
            nat_network=_network_id(name, "nat_network", spec.get("nat_network")),
            security_groups=_groups(spec.get("security_groups")),
            mac_addr=_text(name, "mac_addr", spec.get("mac_addr")),
            ipv4_addr=_text(name, "ipv4_addr", spec.get("ipv4_addr")),
            nat_ipv4_addr=_text(name, "nat_ipv4_addr", spec.get("nat_ipv4_addr"))))
    return plans


@dataclass(frozen=True)
class VifsRequestParam:
    template: dict[str, str] = field(default_factory=dict)  # accepted, unused (as original)

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return plan_request_vifs(vifs)


@dataclass(frozen=True)
class PerInstance:
    """Picks a sub-strategy by ``request_params["network_scheduler"]`` (blank: default)."""

    default: Any = None
    named: dict[str, Any] = field(default_factory=dict)

    def choose(self, request_params: Mapping[str, Any]) -> Any:
        name = request_params.get("network_scheduler")
        if not name:
            if self.default is None:
                raise NetworkSchedulingError("Unable to find any network schedulers")
            return self.default
        if name not in self.named:
            raise NetworkSchedulingError(f"Unknown scheduler definition: {name}")
        return self.named[name]

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return self.choose(request_params).plan(vifs, request_params)


@registry.register("network", "VifsRequestParam")
def _vifs_request_param(options: dict[str, Any], where: str) -> VifsRequestParam:
    registry.no_other_keys(options, ("template",), where)
    return VifsRequestParam(registry.string_map(options, "template", where))


@registry.register("network", "PerInstance")
def _per_instance(options: dict[str, Any], where: str) -> PerInstance:
    registry.no_other_keys(options, ("default", "add"), where)
    default = (registry.build_entry("network", options["default"], f"{where}.default")
               if "default" in options else None)
    added = options.get("add", {})
    if not isinstance(added, dict):
        raise SchedulerConfigError(f"{where}.add: must be a table of strategies")
    named = {name: registry.build_entry("network", entry, f"{where}.add.{name}")
             for name, entry in added.items()}
    return PerInstance(default, named)


def _by_cuuid(session: Session, cls: Any, cuuids: set[str]) -> dict[str, Any]:
    raws = [ids.raw_part(c, cls.prefix) for c in cuuids]
    return {row.canonical_uuid: row
            for row in session.scalars(select(cls).where(cls.uuid.in_(raws)))} if raws else {}


def _monitors(spec: object) -> list[dict[str, Any]]:
    items = list(spec.values()) if isinstance(spec, dict) else spec
    if not isinstance(items, list):
        return []
    return [{k: m[k] for k in MONITOR_KEYS if k in m} for m in items if isinstance(m, dict)]


def build_vifs(session: Session, instance: Instance, plans: Sequence[VifPlan],
               service_type: Any, request_params: Mapping[str, Any] | None = None,
               vendor_id: str | None = None) -> list[NetworkVif]:
    """Create the planned vifs with their MAC and IP leases (in the caller's transaction)."""
    request_params = request_params or {}
    wanted = {n for p in plans for n in (p.network, p.nat_network) if n}
    # Locked before any MAC range (one lock order for every placement).
    networks = {n.canonical_uuid: n for n in ip_address.lock_networks(
        session, raw_uuids=[ids.raw_part(c, Network.prefix) for c in wanted])} if wanted else {}
    for plan in plans:
        for cuuid in (plan.network, plan.nat_network):
            if cuuid and cuuid not in networks:
                raise NetworkSchedulingError(f"Network '{cuuid}' doesn't exist.")
    fallback_groups = _groups(request_params.get("security_groups"))
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
        mac = service_type.mac_address.allocate(session, plan.mac_addr, vendor_id)
        net, nat = networks.get(plan.network or ""), networks.get(plan.nat_network or "")
        vif = NetworkVif(account_id=instance.account_id, instance_id=instance.id,
                         network_id=net.id if net else None, nat_network_id=nat.id if nat else None,
                         mac_addr=mac_address.mac_text(mac), device_index=plan.index)
        vif.security_groups = [groups[g] for g in (plan.security_groups or fallback_groups)]
        session.add(vif)
        vifs.append(vif)
    session.flush()  # vif ids for the leases; MAC ranges are locked before any network
    vif_specs = (request_params.get("vifs") or {}) if isinstance(request_params, dict) else {}
    for plan, vif in zip(ordered, vifs, strict=True):
        if plan.network:
            service_type.ip_address.allocate(session, networks[plan.network], vif,
                                             plan.ipv4_addr, cursor_locked=True)
        if plan.nat_network:
            service_type.ip_address.allocate(session, networks[plan.nat_network], vif,
                                             plan.nat_ipv4_addr, cursor_locked=True)
        spec = vif_specs.get(plan.name) if isinstance(vif_specs, dict) else None
        for monitor in _monitors(spec.get("monitors") if isinstance(spec, dict) else None):
            params = dict(monitor.get("params") or {})
            if "protocol" in monitor:
                params["protocol"] = monitor["protocol"]
            session.add(NetworkVifMonitor(network_vif_id=vif.id, title=monitor.get("title"),
                                          enabled=bool(monitor.get("enabled", True)),
                                          params=params))
    session.expire(instance, ["network_vifs"])  # the vifs were added by foreign key
    return vifs


def create_vifs(session: Session, instance: Instance, service_type: str | None = None
                ) -> list[NetworkVif]:
    """The instance's vifs from its ``request_params["vifs"]`` by its service type's network
    strategy (requested MACs and addresses honoured, the rest allocated)."""
    from collector.scheduling.config import scheduler_config

    config = scheduler_config()
    st = config.service_type(service_type or instance.service_type)
    request_params = instance.request_params or {}
    vifs = _check_vifs(request_params.get("vifs"), NetworkSchedulingError)
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
