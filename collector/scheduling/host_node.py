"""Host placement: strategies (pure rankings of candidate hosts) and the claim loop.

A host strategy names the SQL order its candidates are read in (``order``) and ranks them
(``rank``): it returns the acceptable hosts best first, or raises a typed error. The claim
loop in ``place_host`` then claims the first one that still fits, atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

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
from collector.scheduling.registry import choice, no_other_keys, register
from collector.scheduling.snapshot import HostCandidate, HostRequest

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
        raise InsufficientCapacity(
            f"no host has {request.cpu_cores} cpu cores, {request.memory_size} MB memory and "
            f"{request.disk_bytes} bytes of local disk free for {request.instance_id}")
    return fitting


def least_usage(candidates: Sequence[HostCandidate], request: HostRequest,
                sort_priority: str = "memory") -> list[HostCandidate]:
    """Online, schedulable hosts of the same hypervisor and arch that fit cpu, memory and
    local disk; most free memory (or cpu) first, ties by lowest id (S11)."""
    if sort_priority == "cpu":
        return sorted(_eligible(candidates, request), key=lambda c: (-c.free_cpu_cores, c.id))
    return sorted(_eligible(candidates, request), key=lambda c: (-c.free_memory_size, c.id))


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

    @property
    def order(self) -> str:
        return self.sort_priority

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return least_usage(candidates, request, self.sort_priority)


@dataclass(frozen=True)
class FindFirst:
    order: str = "id"

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
    no_other_keys(options, ("sort_priority",), where)
    return LeastUsage(choice(options, "sort_priority", ("memory", "cpu"), "memory", where))


@register("host_node", "FindFirst")
def _find_first(options: dict[str, Any], where: str) -> FindFirst:
    no_other_keys(options, (), where)
    return FindFirst()


@register("host_node", "SpecifyNode")
def _specify_node(options: dict[str, Any], where: str) -> SpecifyNode:
    no_other_keys(options, (), where)
    return SpecifyNode()


def host_request(instance: Instance, disk_bytes: int) -> HostRequest:
    return HostRequest(
        instance_id=instance.canonical_uuid, hypervisor=instance.hypervisor or "",
        arch=instance.image.arch, cpu_cores=instance.cpu_cores,
        memory_size=instance.memory_size, disk_bytes=disk_bytes,
        account_id=instance.account_id, request_params=instance.request_params or {})


def place_host(session: Session, instance: Instance, request: HostRequest,
               strategy: Any) -> HostCandidate:
    """Rank candidates with ``strategy`` and claim the first that still fits.

    On PostgreSQL a first pass skips hosts another placement holds right now (it would
    only wait for them), a second pass waits: a host is never reported full just because
    it was busy.
    """
    tried: tuple[int, ...] = ()
    passes = (True, False) if dialect_name(session) == "postgresql" else (False,)
    for _ in range(MAX_ROUNDS):
        if getattr(strategy, "specific", False):
            wanted = specified_host(request)
            try:
                raw = ids.raw_part(wanted, HostNode.prefix)
            except CollectorError:
                raise NoMatchingHostNode(f"SpecifyNode: malformed host node id {wanted!r}") \
                    from None
            candidates = capacity.host_snapshot(session, uuids=[raw])
        else:
            candidates = capacity.host_candidates(session, request, order=strategy.order,
                                                  exclude_ids=tried)
        if not candidates:
            break
        ranked = strategy.rank(candidates, request)
        for skip_locked in passes:
            for candidate in ranked:
                if capacity.claim_host(session, candidate.id, instance, request.disk_bytes,
                                       skip_locked=skip_locked):
                    return candidate
        if getattr(strategy, "specific", False):
            break
        tried += tuple(c.id for c in candidates)
    if not capacity.matching_host_exists(session, request.hypervisor, request.arch):
        raise NoMatchingHostNode(f"Unable to find a suitable host node for {request.arch} "
                                 f"{request.hypervisor}.")
    raise InsufficientCapacity(
        f"no host has {request.cpu_cores} cpu cores, {request.memory_size} MB memory and "
        f"{request.disk_bytes} bytes of local disk free for {request.instance_id}")


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
