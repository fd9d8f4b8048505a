"""Host strategies LeastUsage, FindFirst, SpecifyNode and ExcludeSame (``HostStrategy``);
PipedRules is in ``piped_rules.py``.

Each ranks candidate hosts (pure): the acceptable ones best first, or a typed error.
``placement.place_host`` reads the candidates and claims the first that still fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from collector.errors import InsufficientCapacity, NoMatchingHostNode
from collector.scheduling.candidates import HostCandidate, HostExclusion, HostRequest
from collector.scheduling.strategies.catalog import boolean, one_of, option, register
from collector.scheduling.strategies.protocols import HostStrategy

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


def specified_host(request: HostRequest) -> str:
    """The host named by request_params host_id, host_pool_id or host_node_id (first set)."""
    for key in SPECIFY_NODE_PARAMS:
        value = request.request_params.get(key)
        if value:
            return str(value)
    raise NoMatchingHostNode(f"SpecifyNode: no {', '.join(SPECIFY_NODE_PARAMS)} in the "
                             f"request of {request.instance_id}")


@register("host_node", "LeastUsage")
@dataclass(frozen=True)
class LeastUsage(HostStrategy):
    """Online, schedulable hosts of the same hypervisor and arch that fit cpu, memory and
    local disk; most free memory (or cpu) first, ties by lowest id (S11)."""

    sort_priority: str = option(one_of("memory", "cpu"), default="memory")
    allow_over_commit: bool = option(boolean, default=False)  # HA only (spec 2.5, 3.6)
    sql_ranked: ClassVar[bool] = True

    @property
    def order(self) -> str:
        return self.sort_priority

    def _best_first(self, hosts: list[HostCandidate]) -> list[HostCandidate]:
        if self.sort_priority == "cpu":
            return sorted(hosts, key=lambda c: (-c.free_cpu_cores, c.id))
        return sorted(hosts, key=lambda c: (-c.free_memory_size, c.id))

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return self._best_first(_eligible(candidates, request))

    def rank_over_commit(self, candidates: Sequence[HostCandidate], request: HostRequest
                         ) -> list[HostCandidate]:
        """The original's ``schedule_over_commit``: the schedulable hosts of the hypervisor
        and arch, not the current one, room or not; best first as ``rank``."""
        return self._best_first([c for c in candidates if c.schedulable()
                                 and c.matches(request) and c.uuid != request.current_host])


@register("host_node", "ExcludeSame")
@dataclass(frozen=True)
class ExcludeSame(HostStrategy):
    """Any fitting schedulable host but the instance's current one, by id (the original
    took the first row without a capacity check and crashed without a host, S8)."""

    exclude_current: ClassVar[bool] = True

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        others = [c for c in candidates if c.uuid != request.current_host]
        return sorted(_eligible(others, request), key=lambda c: c.id)

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        if request.current_host is None:
            return ()
        return (HostExclusion("the instance's current host (ExcludeSame)",
                              hosts=(request.current_host,)),)


@register("host_node", "FindFirst")
@dataclass(frozen=True)
class FindFirst(HostStrategy):
    """The fitting hosts by id (the original took the first row whatever it was, S7)."""

    sql_ranked: ClassVar[bool] = True

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        return sorted(_eligible(candidates, request), key=lambda c: c.id)


@register("host_node", "SpecifyNode")
@dataclass(frozen=True)
class SpecifyNode(HostStrategy):
    """Only the requested host (``specified_host``), which must be online, schedulable,
    compatible and fit."""

    specific: ClassVar[bool] = True

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]:
        wanted = specified_host(request)
        chosen = [c for c in candidates if c.uuid == wanted]
        if not chosen:
            raise NoMatchingHostNode(f"SpecifyNode: unknown host node {wanted}")
        if not chosen[0].schedulable():
            raise NoMatchingHostNode(f"SpecifyNode: host node {wanted} is not online and "
                                     "enabled")
        return _eligible(chosen, request)

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        wanted = specified_host(request)
        return (HostExclusion(f"not the requested {wanted} (SpecifyNode)", only=(wanted,)),)
