"""Host strategy ``PipedRules`` (spec 3.2): configured rules filter and order the hosts.

Configuration (the original's ``through(:Rule) { opts }`` is one ``through`` table each)::

    [service_types.std.host_node_scheduler]
    strategy = "PipedRules"
    max_results = 100                   # hosts kept after ordering (default 100)

    [[service_types.std.host_node_scheduler.through]]
    rule = "RequestParamToGroup"        # request param -> host node group
    key = "host_group"
    default = "hng-shhost"              # when no pair matches (optional if pairs cover it)
    pair = { gold = "hng-gold" }        # or [["gold", "hng-gold"], ...]

    [[service_types.std.host_node_scheduler.through]]
    rule = "LeastUsageBy"
    key = "memory_size"                 # cpu_cores (default) | memory_size | quota_weight

    [[service_types.std.host_node_scheduler.through]]
    rule = "ScatterBy"
    column = "account_id"               # the only column (default)

The pipe (pure, ``PipedRules.rank``): the online, schedulable hosts of the instance's hypervisor AND
architecture (the original ignored the arch, S10) in host id order; every rule's filter in
order; the hosts with room for cpu, memory and local disk; every rule's reorder in order,
each a stable sort (so the last sorting rule decides and earlier orders break its ties);
then the first ``max_results`` (the original cut them off before ordering and before the
capacity check, S10). A pair wins without a ``default`` (S10).

A custom rule plugs in by name: a frozen dataclass (its ``option`` fields are the options
of its ``through`` table) or a builder function::

    @register_rule("Mine")
    @dataclass(frozen=True)
    class Mine(Rule):
        key: str = option(required_text)

        def reorder(self, hosts, request): ...

A rule's ``facts`` name what the hosts must carry (``groups``, ``quota_weight``,
``account``); ``enrich`` reads exactly those, in one query each. A rule's ``exclusions`` say
what its filter drops as data (RequestParamToGroup: the hosts outside its group), so that a
refusal names them (``refusals.py``).
"""


from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.errors import (
    InsufficientCapacity,
    NoMatchingHostNode,
    SchedulerConfigError,
    UnknownGroup,
)
from collector.models import HostNodeGroup, Instance, Tag, TagMapping
from collector.scheduling.candidates import HostCandidate, HostExclusion, HostRequest
from collector.scheduling.strategies.catalog import (
    Builder,
    builder_of,
    id_of,
    id_pairs,
    one_of,
    option,
    positive_int,
    register,
    required_text,
)
from collector.scheduling.strategies.protocols import HostStrategy

DEFAULT_MAX_RESULTS = 100
Hosts = list[HostCandidate]
T = TypeVar("T")


class Rule:
    """A PipedRules rule: ``filter`` drops hosts, ``reorder`` sorts them (both pure)."""

    facts: ClassVar[frozenset[str]] = frozenset()

    def filter(self, hosts: Hosts, request: HostRequest) -> Hosts:
        return hosts

    def reorder(self, hosts: Hosts, request: HostRequest) -> Hosts:
        return hosts

    def groups(self, request: HostRequest) -> tuple[str, ...]:
        """Host node groups this rule reads for ``request`` (they must exist)."""
        return ()

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        """What ``filter`` drops, as data a refusal counts in SQL; a rule that says nothing
        here has its hosts counted as passed over."""
        return ()


_RULES: dict[str, Builder] = {}


def register_rule(name: str) -> Callable[[T], T]:
    """Make a rule (a dataclass or a builder function) available to ``through`` entries
    under ``name``."""

    def decorate(target: T) -> T:
        _RULES[name] = builder_of(target, entry_keys=("rule",))
        return target

    return decorate


@register_rule("RequestParamToGroup")
@dataclass(frozen=True)
class RequestParamToGroup(Rule):
    key: str = option(required_text)
    default: str | None = option(id_of("hng"), default=None)
    pairs: tuple[tuple[str, str], ...] = option(id_pairs(None, "hng"), default=(), key="pair",
                                                first=True)
    facts: ClassVar[frozenset[str]] = frozenset({"groups"})

    def group_for(self, request: HostRequest) -> str:
        value = request.request_params.get(self.key)
        for param, group in self.pairs:
            if value is not None and str(value) == param:
                return group
        if self.default is None:
            raise UnknownGroup(f"No host node group for {self.key}={value!r} and no default "
                               "host node group set")
        return self.default

    def groups(self, request: HostRequest) -> tuple[str, ...]:
        return (self.group_for(request),)

    def filter(self, hosts: Hosts, request: HostRequest) -> Hosts:
        group = self.group_for(request)
        return [h for h in hosts if group in h.groups]

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        group = self.group_for(request)
        return (HostExclusion(f"not in host node group {group} (PipedRules)", group=group),)


USAGE_KEYS = ("cpu_cores", "memory_size", "quota_weight")


@register_rule("LeastUsageBy")
@dataclass(frozen=True)
class LeastUsageBy(Rule):
    """Ascending by the host's absolute usage of ``key`` (an empty host counts 0)."""

    key: str = option(one_of(*USAGE_KEYS), default="cpu_cores")

    @property
    def facts(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"quota_weight"}) if self.key == "quota_weight" else frozenset()

    def usage(self, host: HostCandidate) -> float:
        if self.key == "memory_size":
            return host.used_memory_size
        if self.key == "quota_weight":
            return host.used_quota_weight
        return host.used_cpu_cores

    def reorder(self, hosts: Hosts, request: HostRequest) -> Hosts:
        return sorted(hosts, key=self.usage)


@register_rule("ScatterBy")
@dataclass(frozen=True)
class ScatterBy(Rule):
    """Ascending by the host's alive instances of the requesting account."""

    column: str = option(one_of("account_id"), default="account_id")
    facts: ClassVar[frozenset[str]] = frozenset({"account"})

    def reorder(self, hosts: Hosts, request: HostRequest) -> Hosts:
        return sorted(hosts, key=lambda h: h.account_instances)


def _through(options: dict[str, Any], key: str, where: str, default: object
             ) -> tuple[Rule, ...]:
    """The ``through`` tables, each built by its ``rule``."""
    entries = options.get(key, [])
    if not isinstance(entries, list):
        raise SchedulerConfigError(f"{where}.{key}: must be an array of rule tables")
    rules = []
    for n, entry in enumerate(entries):
        at = f"{where}.{key}[{n}]"
        if not isinstance(entry, dict) or "rule" not in entry:
            raise SchedulerConfigError(f"{at}.rule: required")
        name = entry["rule"]
        if name not in _RULES:
            raise SchedulerConfigError(f"{at}: unknown rule {name!r} (known: "
                                       f"{', '.join(sorted(_RULES))})")
        rules.append(_RULES[name](dict(entry), at))
    return tuple(rules)


@register("host_node", "PipedRules")
@dataclass(frozen=True)
class PipedRules(HostStrategy):
    rules: tuple[Rule, ...] = option(_through, default=(), key="through")
    max_results: int = option(positive_int, default=DEFAULT_MAX_RESULTS, first=True)
    candidate_limit: ClassVar[int | None] = None  # every candidate: the rules, not SQL, decide

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest) -> Hosts:
        """The hosts the rules accept, best first, at most ``max_results``."""
        hosts = sorted((c for c in candidates if c.schedulable() and c.matches(request)),
                       key=lambda c: c.id)
        if not hosts:
            raise NoMatchingHostNode(f"Unable to find a suitable host node for {request.arch} "
                                     f"{request.hypervisor}.")
        for rule in self.rules:
            hosts = rule.filter(hosts, request)
        if not hosts:
            raise NoMatchingHostNode("No suitable host node found after piping through all "
                                     "rules.")
        hosts = [h for h in hosts if h.fits(request)]
        if not hosts:
            raise InsufficientCapacity(
                f"no host the rules accept has {request.cpu_cores} cpu cores, "
                f"{request.memory_size} MB memory and {request.disk_bytes} bytes of local "
                f"disk free for {request.instance_id}")
        for rule in self.rules:
            hosts = rule.reorder(hosts, request)
        return hosts[:self.max_results]

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        return tuple(e for rule in self.rules for e in rule.exclusions(request))

    def enrich(self, session: Session, candidates: Sequence[HostCandidate],
               request: HostRequest) -> Hosts:
        """The candidates with the facts the rules read; UnknownGroup for a group that does
        not exist."""
        facts = frozenset().union(*(rule.facts for rule in self.rules))
        hosts = list(candidates)
        wanted = {g for rule in self.rules for g in rule.groups(request)}
        if wanted:
            known = {f"hng-{raw}" for raw in session.scalars(
                select(HostNodeGroup.uuid).where(HostNodeGroup.uuid.in_(
                    [ids.raw_part(g, HostNodeGroup.prefix) for g in wanted])))}
            missing = sorted(wanted - known)
            if missing:
                raise UnknownGroup(f"Unknown host node group: {missing[0]}")
        if not hosts:
            return hosts
        if "groups" in facts:
            by_host: dict[str, set[str]] = {}
            for host_uuid, group in session.execute(
                    select(TagMapping.uuid, Tag.uuid).join(Tag, Tag.id == TagMapping.tag_id)
                    .where(Tag.type_id == HostNodeGroup.__mapper_args__["polymorphic_identity"],
                           TagMapping.uuid.in_([h.uuid for h in hosts]))):
                by_host.setdefault(host_uuid, set()).add(f"hng-{group}")
            hosts = [replace(h, groups=frozenset(by_host.get(h.uuid, ()))) for h in hosts]
        if facts & {"quota_weight", "account"}:
            sums = {row.host_node_id: row for row in session.execute(
                select(Instance.host_node_id,
                       func.coalesce(func.sum(Instance.quota_weight), 0.0).label("quota"),
                       func.coalesce(func.sum(case((Instance.account_id == request.account_id,
                                                    1), else_=0)), 0).label("account"))
                .where(Instance.host_node_id.in_([h.id for h in hosts]), Instance.alive())
                .group_by(Instance.host_node_id))}
            hosts = [replace(h,
                             used_quota_weight=float(sums[h.id].quota) if h.id in sums else 0.0,
                             account_instances=int(sums[h.id].account) if h.id in sums else 0)
                     for h in hosts]
        return hosts
