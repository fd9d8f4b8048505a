"""Host placement: strategies (pure rankings of candidate hosts) and the claim loop.

A host strategy names the SQL order its candidates are read in (``order``) and ranks them
(``rank``): it returns the acceptable hosts best first, or raises a typed error. The claim
loop in ``place_host`` then claims the first one that still fits, atomically.

Optional attributes of a strategy, read by the claim loop:
``candidate_limit`` (how many candidates a round reads, None = all), ``enrich(session,
candidates, request)`` (reads the extra facts its rank needs, e.g. PipedRules' groups and
usage sums; rank stays pure), ``exclude_current`` (never the instance's current host),
``specific`` (the requested host only), ``allow_over_commit`` (HA re-placement may take
the best host past its offering when none has room, spec 2.5), ``sql_ranked`` (its rank
is exactly the candidates' SQL order, so on PostgreSQL the best host nobody holds is read,
ranked and claimed in one statement, ``capacity.claim_best``).

Strategies here: LeastUsage, FindFirst, SpecifyNode, ExcludeSame; PipedRules is in
``piped_rules.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, object_session

from collector import ids
from collector.db import dialect_name
from collector.errors import (
    CollectorError,
    IncompatibleHostNode,
    InsufficientCapacity,
    InvalidHostNodeID,
    NoMatchingHostNode,
    OutOfHostCapacity,
)
from collector.models import HostNode, Instance
from collector.scheduling import capacity
from collector.scheduling.candidates import HostCandidate, HostRequest
from collector.scheduling.strategies.catalog import choice, flag, no_other_keys, register

# Candidate rounds before giving up: each round reads the next best hosts that fit.
MAX_ROUNDS = 4
SPECIFY_NODE_PARAMS = ("host_id", "host_pool_id", "host_node_id")


def _eligible(candidates: Sequence[HostCandidate], request: HostRequest) -> list[HostCandidate]:
    matching = [c for c in candidates if c.schedulable() and c.matches(request)]
    if not matching:
        raise NoMatchingHostNode(f"Unable to find a suitable host node for {request.arch} "
                                 f"{request.hypervisor}.")
    fitting = [c for c in matching if c.fits(request)]
    if not fitting:
        raise no_room(request)
    return fitting


def no_room(request: HostRequest) -> InsufficientCapacity:
    """The error of a request no host can take (its figures as an operator reads them)."""
    disk_mb = -(-request.disk_bytes // (1 << 20))
    return InsufficientCapacity(
        f"no host has {request.cpu_cores} cpu cores, {request.memory_size} MB memory and "
        f"{disk_mb} MB local disk free for {request.instance_id}")


def least_usage(candidates: Sequence[HostCandidate], request: HostRequest,
                sort_priority: str = "memory") -> list[HostCandidate]:
    """Online, schedulable hosts of the same hypervisor and arch that fit cpu, memory and
    local disk; most free memory (or cpu) first, ties by lowest id (S11)."""
    if sort_priority == "cpu":
        return sorted(_eligible(candidates, request), key=lambda c: (-c.free_cpu_cores, c.id))
    return sorted(_eligible(candidates, request), key=lambda c: (-c.free_memory_size, c.id))


def over_commit_order(candidates: Sequence[HostCandidate], request: HostRequest,
                      sort_priority: str = "memory") -> list[HostCandidate]:
    """Over-commit ranking (LeastUsage's ``schedule_over_commit``): the schedulable hosts of
    the hypervisor and arch, not the current one, room or not; best first as LeastUsage."""
    matching = [c for c in candidates if c.schedulable() and c.matches(request)
                and c.uuid != request.current_host]
    if sort_priority == "cpu":
        return sorted(matching, key=lambda c: (-c.free_cpu_cores, c.id))
    return sorted(matching, key=lambda c: (-c.free_memory_size, c.id))


def exclude_same(candidates: Sequence[HostCandidate], request: HostRequest
                 ) -> list[HostCandidate]:
    """Any fitting schedulable host but the instance's current one, by id (the original
    took the first row without a capacity check and crashed without a host, S8)."""
    others = [c for c in candidates if c.uuid != request.current_host]
    return sorted(_eligible(others, request), key=lambda c: c.id)


def find_first(candidates: Sequence[HostCandidate], request: HostRequest) -> list[HostCandidate]:
    """The fitting hosts by id (the original took the first row whatever it was, S7)."""
    return sorted(_eligible(candidates, request), key=lambda c: c.id)


def specified_host(request: HostRequest) -> str:
    """The host named by request_params host_id, host_pool_id or host_node_id (first set)."""
    for key in SPECIFY_NODE_PARAMS:
        value = request.request_params.get(key)
        if value:
            return str(value)
    raise NoMatchingHostNode(f"SpecifyNode: no {', '.join(SPECIFY_NODE_PARAMS)} in the "
                             f"request of {request.instance_id}")


def specify_node(candidates: Sequence[HostCandidate], request: HostRequest) -> list[HostCandidate]:
    """Only the requested host, which must be online, schedulable, compatible and fit."""
    wanted = specified_host(request)
    chosen = [c for c in candidates if c.uuid == wanted]
    if not chosen:
        raise NoMatchingHostNode(f"SpecifyNode: unknown host node {wanted}")
    if not chosen[0].schedulable():
        raise NoMatchingHostNode(f"SpecifyNode: host node {wanted} is not online and enabled")
    return _eligible(chosen, request)


@dataclass(frozen=True)
class LeastUsage:
    sort_priority: str = "memory"
    allow_over_commit: bool = False  # only HA re-placement uses it (spec 2.5, 3.6)
    sql_ranked = True  # rank == the candidates' SQL order: claim_best may rank in SQL

    @property
    def order(self) -> str:
        return self.sort_priority

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return least_usage(candidates, request, self.sort_priority)

    def rank_over_commit(self, candidates: Sequence[HostCandidate], request: HostRequest
                         ) -> list[HostCandidate]:
        return over_commit_order(candidates, request, self.sort_priority)


@dataclass(frozen=True)
class ExcludeSame:
    order: str = "id"
    exclude_current = True

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return exclude_same(candidates, request)


@dataclass(frozen=True)
class FindFirst:
    order: str = "id"
    sql_ranked = True

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return find_first(candidates, request)


@dataclass(frozen=True)
class SpecifyNode:
    order: str = "id"
    specific = True  # candidates are the requested host only, in any state

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return specify_node(candidates, request)


@register("host_node", "LeastUsage")
def _least_usage(options: dict[str, Any], where: str) -> LeastUsage:
    no_other_keys(options, ("sort_priority", "allow_over_commit"), where)
    return LeastUsage(choice(options, "sort_priority", ("memory", "cpu"), "memory", where),
                      flag(options, "allow_over_commit", False, where))


@register("host_node", "ExcludeSame")
def _exclude_same(options: dict[str, Any], where: str) -> ExcludeSame:
    no_other_keys(options, (), where)
    return ExcludeSame()


@register("host_node", "FindFirst")
def _find_first(options: dict[str, Any], where: str) -> FindFirst:
    no_other_keys(options, (), where)
    return FindFirst()


@register("host_node", "SpecifyNode")
def _specify_node(options: dict[str, Any], where: str) -> SpecifyNode:
    no_other_keys(options, (), where)
    return SpecifyNode()


def host_request(instance: Instance, disk_bytes: int) -> HostRequest:
    current = None
    if instance.host_node_id is not None:  # read by id: the relationship may be stale
        current = object_session(instance).get(HostNode, instance.host_node_id).canonical_uuid
    return HostRequest(
        instance_id=instance.canonical_uuid, hypervisor=instance.hypervisor or "",
        arch=instance.image.arch, cpu_cores=instance.cpu_cores,
        memory_size=instance.memory_size, disk_bytes=disk_bytes,
        account_id=instance.account_id, request_params=instance.request_params or {},
        current_host=current)


def place_host(session: Session, instance: Instance, request: HostRequest,
               strategy: Any, over_commit: bool = False) -> HostCandidate:
    """Rank candidates with ``strategy`` and claim the first that still fits.

    On PostgreSQL a first pass skips hosts another placement holds right now (it would
    only wait for them), a second pass waits: a host is never reported full just because
    it was busy. ``over_commit`` (HA re-placement with a strategy that allows it): when no
    host has room, the best-ranked one is claimed past its offering.
    The instance must hold no host claim (``capacity.release_host`` first).
    """
    specific = getattr(strategy, "specific", False)
    limit = getattr(strategy, "candidate_limit", capacity.CANDIDATE_LIMIT)
    enrich = getattr(strategy, "enrich", None)
    current = instance.host_node_id if getattr(strategy, "exclude_current", False) else None
    tried: tuple[int, ...] = () if current is None else (current,)
    postgres = dialect_name(session) == "postgresql"
    if postgres and getattr(strategy, "sql_ranked", False) and not specific \
            and enrich is None and current is None:
        best = capacity.claim_best(session, request, instance, strategy.order)
        if best is not None:
            return best
    for _ in range(MAX_ROUNDS):
        if specific:
            wanted = specified_host(request)
            try:
                raw = ids.raw_part(wanted, HostNode.prefix)
            except CollectorError:
                raise NoMatchingHostNode(f"SpecifyNode: malformed host node id {wanted!r}") \
                    from None
            candidates = capacity.host_snapshot(session, uuids=[raw])
        else:
            candidates = capacity.host_candidates(session, request, order=strategy.order,
                                                  limit=limit, exclude_ids=tried)
        if enrich is not None:
            candidates = enrich(session, candidates, request)
        if not candidates:
            break
        ranked = strategy.rank(candidates, request)
        if postgres:  # first pass: the best-ranked host nobody holds, in one statement
            claimed = capacity.claim_first_unlocked(session, [c.id for c in ranked],
                                                    instance, request.disk_bytes)
            if claimed is not None:
                return next(c for c in ranked if c.id == claimed)
        for candidate in ranked:  # then waiting for busy ones (SQLite: the only pass)
            if capacity.claim_host(session, candidate.id, instance, request.disk_bytes):
                return candidate
        if specific:
            break
        tried += tuple(c.id for c in candidates)
    if over_commit and getattr(strategy, "allow_over_commit", False):
        forced = _over_commit(session, instance, request, strategy)
        if forced is not None:
            return forced
    if not capacity.matching_host_exists(session, request.hypervisor, request.arch):
        raise NoMatchingHostNode(f"Unable to find a suitable host node for {request.arch} "
                                 f"{request.hypervisor}.")
    raise no_room(request)


def _over_commit(session: Session, instance: Instance, request: HostRequest,
                 strategy: Any) -> HostCandidate | None:
    exclude = (instance.host_node_id,) if instance.host_node_id is not None else ()
    candidates = capacity.host_candidates(session, request, order=strategy.order, limit=1,
                                          exclude_ids=exclude, fit=False)
    ranked = strategy.rank_over_commit(candidates, request)
    if not ranked:
        return None
    capacity.claim_host(session, ranked[0].id, instance, request.disk_bytes, force=True)
    return ranked[0]


def assign_explicit_host(session: Session, instance: Instance, host_cuuid: object) -> HostNode:
    """The API's explicit host (spec 1.8.1 step 9), checked and claimed.

    Not online -> InvalidHostNodeID; other hypervisor or arch -> IncompatibleHostNode;
    no room for cpu, memory or the instance's local volumes -> OutOfHostCapacity.
    ``scheduling_enabled`` is not required: an operator may place on a drained host.
    """
    host = HostNode.by_cuuid(session, host_cuuid)
    if host.status != "online":
        raise InvalidHostNodeID(f"host node {host.canonical_uuid} is not online")
    arch = instance.image.arch
    if host.hypervisor != instance.hypervisor or host.arch != arch:
        raise IncompatibleHostNode(
            f"host node {host.canonical_uuid} is {host.arch} {host.hypervisor}, the instance "
            f"needs {arch} {instance.hypervisor}")
    capacity.release_host(session, instance)
    disk = capacity.local_disk_bytes(session, instance)
    if not capacity.claim_host(session, host.id, instance, disk):
        raise OutOfHostCapacity(f"host node {host.canonical_uuid} has no room for "
                                f"{instance.cpu_cores} cpu cores, {instance.memory_size} MB "
                                f"memory and {disk} bytes of local disk")
    return host
