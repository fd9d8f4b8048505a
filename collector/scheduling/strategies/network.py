"""Network strategies (``NetworkStrategy``): the ``vifs`` request parameter turned into
vif plans (pure).

``plan(vifs, request_params) -> [VifPlan]``; ``vifs.build_vifs`` then creates what the
plans say. Every strategy keeps one contract (S6): a plan, or a typed error
(NetworkSchedulingError, UnknownGroup). Requested MACs are honoured by all (S19).

VifsRequestParam  the request's vifs: network, NAT network, addresses, MAC, groups
PerInstance       a sub-strategy by ``request_params["network_scheduler"]``
VifTemplate       ``template`` vif name -> network; the request's network is ignored, a
                  vif without an entry has no network
VifParamTemplate  VifsRequestParam without NAT
SpecifyNetwork    VifsRequestParam, but only requested addresses are leased
NatOneToOne       every vif on ``network_id`` with NAT ``nat_network_id`` (the outside
                  address from the NAT network itself, S15)
FlatSingle        one vif (index 0) on ``network_id``, default the network with the lowest
                  id (the original always ignored the request, S21)
RequestParamToGroup  every vif in the network group ``pair``-ed with
                  ``request_params[key]`` (else ``default``); members by ``sort_index``
NetworkGroup      each vif in its ``network_group`` (else ``network_group_id``), the member
                  network with the fewest taken addresses first; a vif naming a ``network``
                  keeps it
Group plans try the members in order until one has an address; the vif is made once (the
original leaked one vif per try, S20). A vif may name ``network_group`` (nwg-...) instead
of ``network`` with any strategy that passes the request's vifs on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collector import ids
from collector.errors import (
    CollectorError,
    NetworkSchedulingError,
    SchedulerConfigError,
    UnknownGroup,
)
from collector.scheduling.candidates import ALL_NETWORKS, GroupMember, VifPlan
from collector.scheduling.strategies.catalog import (
    build_entry,
    id_of,
    id_pairs,
    ids_of,
    one_of,
    option,
    register,
    required_text,
    strings,
)
from collector.scheduling.strategies.protocols import NetworkStrategy


def check_vifs(value: object, error: type[CollectorError]) -> dict[str, dict[str, Any]]:
    """``vifs``: absent -> {}, JSON text parsed, a map of vif name -> map, else ``error``."""
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


def _id(name: str, key: str, value: object, prefix: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        ids.raw_part(value, prefix)
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


def security_group_ids(value: object) -> tuple[str, ...]:
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
        net = _id(name, "network", spec.get("network"), "nw")
        group = _id(name, "network_group", spec.get("network_group"), "nwg")
        if net and group:
            raise NetworkSchedulingError(f"vif {name}: give network or network_group, not both")
        plans.append(VifPlan(
            name=name, index=index, network=net,
            nat_network=_id(name, "nat_network", spec.get("nat_network"), "nw"),
            security_groups=security_group_ids(spec.get("security_groups")),
            mac_addr=_text(name, "mac_addr", spec.get("mac_addr")),
            ipv4_addr=_text(name, "ipv4_addr", spec.get("ipv4_addr")),
            nat_ipv4_addr=_text(name, "nat_ipv4_addr", spec.get("nat_ipv4_addr")),
            network_group=group))
    return plans


def order_members(members: Sequence[GroupMember], order: str) -> list[GroupMember]:
    """The order a group's networks are tried in: ``sort_index`` (then id), or
    ``least_allocation`` (fewest taken addresses, then sort_index, then id)."""
    if order == "least_allocation":
        return sorted(members, key=lambda m: (m.allocated, m.sort_index, m.id))
    return sorted(members, key=lambda m: (m.sort_index, m.id))


def _pair_or_default(request_params: Mapping[str, Any], key: str,
                     mapped: tuple[tuple[str, str], ...], default: str | None,
                     what: str) -> str:
    value = request_params.get(key)
    for param, target in mapped:
        if value is not None and str(value) == param:
            return target
    if default is None:
        raise UnknownGroup(f"No {what} for {key}={value!r} and no default {what} set")
    return default


@register("network", "VifsRequestParam")
@dataclass(frozen=True)
class VifsRequestParam(NetworkStrategy):
    """The request's vifs as they are (``plan_request_vifs``)."""

    # Accepted and unused, as the original.
    template: dict[str, str] = option(strings, default_factory=dict)

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return plan_request_vifs(vifs)


@register("network", "VifParamTemplate")
@dataclass(frozen=True)
class VifParamTemplate(VifsRequestParam):
    """VifsRequestParam without NAT."""

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return [replace(p, nat_network=None, nat_ipv4_addr=None)
                for p in plan_request_vifs(vifs)]


@register("network", "SpecifyNetwork")
@dataclass(frozen=True)
class SpecifyNetwork(VifsRequestParam):
    """VifsRequestParam, but only requested addresses are leased."""

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return [replace(p, auto_address=False) for p in plan_request_vifs(vifs)]


def _sub_strategy(options: dict[str, Any], key: str, where: str, default: object
                  ) -> NetworkStrategy | None:
    if key not in options:
        return None
    return build_entry("network", options[key], f"{where}.{key}")


def _sub_strategies(options: dict[str, Any], key: str, where: str, default: object
                    ) -> dict[str, NetworkStrategy]:
    added = options.get(key, {})
    if not isinstance(added, dict):
        raise SchedulerConfigError(f"{where}.{key}: must be a table of strategies")
    return {name: build_entry("network", entry, f"{where}.{key}.{name}")
            for name, entry in added.items()}


@register("network", "PerInstance")
@dataclass(frozen=True)
class PerInstance(NetworkStrategy):
    """Picks a sub-strategy by ``request_params["network_scheduler"]`` (blank: default)."""

    default: NetworkStrategy | None = option(_sub_strategy, default=None)
    named: dict[str, NetworkStrategy] = option(_sub_strategies, default_factory=dict,
                                               key="add")

    def choose(self, request_params: Mapping[str, Any]) -> NetworkStrategy:
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


@register("network", "VifTemplate")
@dataclass(frozen=True)
class VifTemplate(NetworkStrategy):
    template: dict[str, str] = option(ids_of("nw"), default_factory=dict)  # vif name -> nw-...

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        out = []
        for p in plan_request_vifs(vifs):
            net = self.template.get(p.name)
            out.append(replace(p, network=net, nat_network=None, network_group=None,
                               ipv4_addr=p.ipv4_addr if net and p.network == net else None,
                               nat_ipv4_addr=None))
        return out


@register("network", "NatOneToOne")
@dataclass(frozen=True)
class NatOneToOne(NetworkStrategy):
    network_id: str = option(id_of("nw", required=True))
    nat_network_id: str = option(id_of("nw", required=True))

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        return [replace(p, network=self.network_id, nat_network=self.nat_network_id,
                        network_group=None,
                        ipv4_addr=p.ipv4_addr if p.network == self.network_id else None,
                        nat_ipv4_addr=p.nat_ipv4_addr
                        if p.nat_network == self.nat_network_id else None)
                for p in plan_request_vifs(vifs)]


@register("network", "FlatSingle")
@dataclass(frozen=True)
class FlatSingle(NetworkStrategy):
    network_id: str | None = option(id_of("nw"), default=None)

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        plans = sorted(plan_request_vifs(vifs), key=lambda p: p.index)
        first = plans[0] if plans else VifPlan("eth0", 0)
        keep_ip = self.network_id is not None and first.network == self.network_id
        return [VifPlan(name=first.name, index=0, network=self.network_id,
                        network_group=None if self.network_id else ALL_NETWORKS,
                        security_groups=first.security_groups, mac_addr=first.mac_addr,
                        ipv4_addr=first.ipv4_addr if keep_ip else None)]


@register("network", "RequestParamToGroup")
@dataclass(frozen=True)
class RequestParamToGroup(NetworkStrategy):
    key: str = option(required_text)
    default: str | None = option(id_of("nwg"), default=None)
    pairs: tuple[tuple[str, str], ...] = option(id_pairs(None, "nwg"), default=(), key="pair",
                                                first=True)

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        plans = plan_request_vifs(vifs)
        if not plans:
            return []
        group = _pair_or_default(request_params, self.key, self.pairs, self.default,
                                 "network group")
        return [replace(p, network=None, nat_network=None, network_group=group,
                        group_order="sort_index", ipv4_addr=None, nat_ipv4_addr=None)
                for p in plans]


@register("network", "NetworkGroup")
@dataclass(frozen=True)
class NetworkGroup(NetworkStrategy):
    network_group_id: str | None = option(id_of("nwg"), default=None)
    algorithm: str = option(one_of("least_allocation"), default="least_allocation")

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]:
        if "vifs" not in request_params:  # the original's default template
            vifs = {"eth0": {"index": 0}}
        out = []
        for p in plan_request_vifs(vifs):
            if p.network and not p.network_group:
                out.append(replace(p, nat_network=None, nat_ipv4_addr=None))
                continue
            group = p.network_group or self.network_group_id
            if group is None:
                raise UnknownGroup(f"vif {p.name}: No default network group set")
            out.append(replace(p, network=None, nat_network=None, network_group=group,
                               group_order=self.algorithm, ipv4_addr=None,
                               nat_ipv4_addr=None))
        return out
