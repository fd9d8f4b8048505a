"""Scheduler configuration: which strategies place each service type.

Read once per process from the TOML file named by ``COLLECTOR_SCHEDULER_CONFIG``; without
it, the built-in defaults equal the original's sample configuration. Keys and strategy
names are the original's (``dcmgr.conf``), so a configuration maps one-to-one::

    default_service_type = "std"          # volumes and vifs without one, ip-pool acquire
    mac_address_vendor_id = "525400"      # 6 hex digits: host vnet / 6-digit manual MACs
    create_volume_min_size = 10           # MB, API volume size bounds
    create_volume_max_size = 3000
    stopped_instance_usage_factor = 1.0   # accepted for compatibility (no effect, S27)
    evacuate_on_node_offline = false      # a host agent going offline re-places its HA
                                          # instances (once per outage; the hma's job)
    cpu_allocation_ratio = 1.0            # what a host offers = physical x ratio, unless
    ram_allocation_ratio = 1.0            # the host has its own (api.set_host_allocation_ratios)

    [features]
    openvnet = false                      # also submit vnet-collector.schedule_vifs

    [service_types.std]
    class = "StdServiceType"              # or "LbServiceType"
    host_node_scheduler = { strategy = "LeastUsage", sort_priority = "memory" }
    storage_node_scheduler = "LeastUsage" # a bare name = a strategy without options
    mac_address_scheduler = "Default"     # default "Default"
    ip_address_scheduler = "Incremental"  # default "Incremental"
    # host_node_ha_scheduler: defaults to host_node_scheduler (S12); over-commit only
    #   when asked: { strategy = "LeastUsage", allow_over_commit = true }

    [service_types.std.network_scheduler]
    strategy = "PerInstance"
    default = "VifsRequestParam"          # request_params["network_scheduler"] blank
    # [service_types.std.network_scheduler.add.<name>]   strategy = "...", options...

    [service_types.lb]
    class = "LbServiceType"               # image_id, instances_network, management_network,
    ...                                   # ssh_key_id, amqp_server_uri: optional strings
                                          # (backup_storage_id for both classes)

A strategy entry is its name, or a table with ``strategy`` plus that strategy's options
(the strategy's ``option`` fields, ``strategies/catalog.py``).
``docs/scheduler.example.toml`` is the full sample with every strategy;
``docs/scheduler.original-sample.toml`` is the original's own sample, key for key. A bad
configuration raises SchedulerConfigError with one line naming the key, e.g.
``service_types.std.host_node_scheduler.sort_priority: must be "memory" or "cpu"``.
"""

from __future__ import annotations

import os
import threading
import tomllib
from dataclasses import dataclass, field
from typing import Any

from collector.errors import SchedulerConfigError, UnknownServiceType
from collector.scheduling import ratios
from collector.scheduling.strategies import catalog
from collector.scheduling.strategies.protocols import (
    HostStrategy,
    IpStrategy,
    MacStrategy,
    NetworkStrategy,
    StorageStrategy,
)

ENV_VAR = "COLLECTOR_SCHEDULER_CONFIG"
SERVICE_TYPE_CLASSES = ("StdServiceType", "LbServiceType")

# The original's sample configuration (dcmgr.conf.example), as TOML would give it.
DEFAULTS: dict[str, Any] = {
    "default_service_type": "std",
    "mac_address_vendor_id": "525400",
    "create_volume_min_size": 10,
    "create_volume_max_size": 3000,
    "stopped_instance_usage_factor": 1.0,
    "evacuate_on_node_offline": False,
    "cpu_allocation_ratio": 1.0,
    "ram_allocation_ratio": 1.0,
    "features": {"openvnet": False},
    "service_types": {
        "std": {
            "class": "StdServiceType",
            "host_node_scheduler": {"strategy": "LeastUsage", "sort_priority": "memory"},
            "storage_node_scheduler": "LeastUsage",
            "network_scheduler": {"strategy": "PerInstance", "default": "VifsRequestParam"},
            "mac_address_scheduler": "Default",
            "ip_address_scheduler": "Incremental",
        },
        "lb": {
            "class": "LbServiceType",
            "host_node_scheduler": {"strategy": "LeastUsage", "sort_priority": "memory"},
            "storage_node_scheduler": "LeastUsage",
            "network_scheduler": "VifsRequestParam",
            "mac_address_scheduler": "Default",
            "ip_address_scheduler": "Incremental",
        },
    },
}

_TOP_KEYS = {"default_service_type", "mac_address_vendor_id", "create_volume_min_size",
             "create_volume_max_size", "stopped_instance_usage_factor", "features",
             "service_types", "default_shared_host_pool", "default_shared_network_pool",
             "default_shared_storage_pool", "evacuate_on_node_offline",
             "cpu_allocation_ratio", "ram_allocation_ratio"}
# key -> (strategy kind, required)
_SCHEDULER_KEYS = {
    "host_node_scheduler": ("host_node", True),
    "host_node_ha_scheduler": ("host_node", False),
    "storage_node_scheduler": ("storage_node", True),
    "network_scheduler": ("network", True),
    "mac_address_scheduler": ("mac_address", False),
    "ip_address_scheduler": ("ip_address", False),
}
# Other keys of a service type (kept in ``extra``, not used by placement).
_EXTRA_KEYS = {
    "StdServiceType": ("backup_storage_id",),
    "LbServiceType": ("image_id", "instances_network", "management_network", "ssh_key_id",
                      "amqp_server_uri", "backup_storage_id"),
}


@dataclass(frozen=True)
class ServiceTypeConfig:
    """The strategies of one service type (objects built from their options)."""

    name: str
    kind: str
    host_node: HostStrategy
    host_node_ha: HostStrategy
    storage_node: StorageStrategy
    network: NetworkStrategy
    mac_address: MacStrategy
    ip_address: IpStrategy
    extra: dict[str, str] = field(default_factory=dict)  # lb: image_id, networks, ...


@dataclass(frozen=True)
class SchedulerConfig:
    source: str
    default_service_type: str
    service_types: dict[str, ServiceTypeConfig]
    mac_address_vendor_id: str
    create_volume_min_size: int
    create_volume_max_size: int
    openvnet: bool = False
    evacuate_on_node_offline: bool = False
    # The allocation ratios of hosts that have none of their own, in thousandths.
    cpu_allocation_ratio_milli: int = ratios.DEFAULT_MILLI
    ram_allocation_ratio_milli: int = ratios.DEFAULT_MILLI

    def service_type(self, name: str | None = None) -> ServiceTypeConfig:
        """The named service type (None or "" = the default); UnknownServiceType otherwise."""
        key = name or self.default_service_type
        try:
            return self.service_types[key]
        except KeyError:
            raise UnknownServiceType(f"unknown service type: {key!r}") from None


def _int(doc: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SchedulerConfigError(f"{key}: must be an integer >= {minimum}")
    return value


def _service_type(name: str, doc: object) -> ServiceTypeConfig:
    where = f"service_types.{name}"
    if not isinstance(doc, dict):
        raise SchedulerConfigError(f"{where}: must be a table")
    kind = doc.get("class", "StdServiceType")
    if kind not in SERVICE_TYPE_CLASSES:
        raise SchedulerConfigError(f'{where}.class: must be "StdServiceType" or "LbServiceType"')
    allowed = {"class", *_SCHEDULER_KEYS, *_EXTRA_KEYS[kind]}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise SchedulerConfigError(f"{where}.{unknown[0]}: unknown key")
    built: dict[str, Any] = {}
    for key, (strategy_kind, required) in _SCHEDULER_KEYS.items():
        if key not in doc:
            if required:
                raise SchedulerConfigError(f"{where}.{key}: required")
            continue
        built[key] = catalog.build_entry(strategy_kind, doc[key], f"{where}.{key}")
    extra = {}
    for key in _EXTRA_KEYS[kind]:
        if key in doc:
            extra[key] = catalog.text(doc, key, where)
    return ServiceTypeConfig(
        name=name, kind=kind, host_node=built["host_node_scheduler"],
        host_node_ha=built.get("host_node_ha_scheduler", built["host_node_scheduler"]),
        storage_node=built["storage_node_scheduler"], network=built["network_scheduler"],
        mac_address=built.get("mac_address_scheduler")
        or catalog.build("mac_address", "Default", {}, f"{where}.mac_address_scheduler"),
        ip_address=built.get("ip_address_scheduler")
        or catalog.build("ip_address", "Incremental", {}, f"{where}.ip_address_scheduler"),
        extra=extra)


def parse_config(doc: dict[str, Any], source: str = "built-in defaults") -> SchedulerConfig:
    """Validate a configuration document (as TOML gives it); keys absent take defaults."""
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SchedulerConfigError(f"{unknown[0]}: unknown key")
    merged = {**{k: v for k, v in DEFAULTS.items() if k != "service_types"}, **doc}
    merged.setdefault("service_types", DEFAULTS["service_types"])
    types_doc = merged["service_types"]
    if not isinstance(types_doc, dict) or not types_doc:
        raise SchedulerConfigError("service_types: at least one service type is required")
    service_types = {name: _service_type(name, body) for name, body in types_doc.items()}
    default = merged["default_service_type"]
    if default not in service_types:
        raise SchedulerConfigError(
            f"default_service_type: {default!r} is not a configured service type")
    vendor = merged["mac_address_vendor_id"]
    if not isinstance(vendor, str) or len(vendor) != 6 or not _is_hex(vendor):
        raise SchedulerConfigError("mac_address_vendor_id: must be 6 hex digits")
    low, high = _int(merged, "create_volume_min_size"), _int(merged, "create_volume_max_size")
    if low > high:
        raise SchedulerConfigError("create_volume_max_size: must be >= create_volume_min_size")
    # Checked and dropped: the original's key, with no effect here (S27).
    factor = merged["stopped_instance_usage_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
        raise SchedulerConfigError("stopped_instance_usage_factor: must be a number >= 0")
    features = merged["features"]
    if not isinstance(features, dict) or set(features) - {"openvnet"}:
        raise SchedulerConfigError("features: only the key openvnet is known")
    openvnet = features.get("openvnet", False)
    if not isinstance(openvnet, bool):
        raise SchedulerConfigError("features.openvnet: must be true or false")
    evacuate = merged["evacuate_on_node_offline"]
    if not isinstance(evacuate, bool):
        raise SchedulerConfigError("evacuate_on_node_offline: must be true or false")
    return SchedulerConfig(
        source=source, default_service_type=default, service_types=service_types,
        mac_address_vendor_id=vendor.lower(), create_volume_min_size=low,
        create_volume_max_size=high,
        openvnet=openvnet, evacuate_on_node_offline=evacuate,
        cpu_allocation_ratio_milli=_ratio(merged, "cpu_allocation_ratio"),
        ram_allocation_ratio_milli=_ratio(merged, "ram_allocation_ratio"))


def _ratio(doc: dict[str, Any], key: str) -> int:
    try:
        return ratios.ratio_milli(doc[key])
    except ValueError as exc:
        raise SchedulerConfigError(f"{key}: {exc}") from None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def load_scheduler_config(path: str | None = None) -> SchedulerConfig:
    """Read ``path`` (default: ``$COLLECTOR_SCHEDULER_CONFIG``; unset = built-in defaults)."""
    path = path if path is not None else os.environ.get(ENV_VAR) or None
    if path is None:
        return parse_config({})
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise SchedulerConfigError(f"{ENV_VAR}: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchedulerConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(doc, source=path)


_lock = threading.Lock()
_cached: SchedulerConfig | None = None


def scheduler_config() -> SchedulerConfig:
    """The process's configuration, loaded on first use."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = load_scheduler_config()
        return _cached


def reload_scheduler_config(path: str | None = None) -> SchedulerConfig:
    """Forget the cached configuration and load it again (tests, a reload signal)."""
    global _cached
    with _lock:
        _cached = load_scheduler_config(path)
        return _cached
