"""What a strategy of each kind is, as its callers use it: one Protocol per kind.

HostStrategy     ranks candidate hosts (``placement.place_host`` claims)
StorageStrategy  ranks candidate storage nodes (``placement.place_storage`` claims)
NetworkStrategy  plans the vifs of an instance (``vifs.build_vifs`` creates them)
IpStrategy       leases an IPv4 address of a network
MacStrategy      leases a MAC address

A built-in strategy subclasses its kind's Protocol, so it inherits the defaults declared
here and declares only what differs; anything with the same members is a strategy too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from sqlalchemy.orm import Session

from collector.models import Network, NetworkVif, NetworkVifIpLease
from collector.scheduling.candidates import (
    CANDIDATE_LIMIT,
    HostCandidate,
    HostExclusion,
    HostRequest,
    StorageCandidate,
    VifPlan,
)


class HostStrategy(Protocol):
    """Ranks the hosts an instance may take: the acceptable ones best first, or a typed
    PlacementError. Ranking is pure: the facts it needs come with the candidates."""

    candidate_limit: ClassVar[int | None] = CANDIDATE_LIMIT  # read per round; None: all
    specific: ClassVar[bool] = False  # candidates: the requested host only, in any state
    exclude_current: ClassVar[bool] = False  # never the instance's current host
    # ``rank`` is exactly the candidates' SQL order (``order``, nothing to enrich): on
    # PostgreSQL the best host nobody holds is read, ranked and claimed in one statement.
    sql_ranked: ClassVar[bool] = False
    # HA re-placement may take the best host past its offering when none has room
    # (spec 2.5): the hosts ``rank_over_commit`` answers.
    allow_over_commit: bool = False

    @property
    def order(self) -> str:
        """The SQL order candidates are read in: "memory" or "cpu" (most free first), or
        "id"."""
        return "id"

    def rank(self, candidates: Sequence[HostCandidate], request: HostRequest
             ) -> list[HostCandidate]: ...

    def rank_over_commit(self, candidates: Sequence[HostCandidate], request: HostRequest
                         ) -> list[HostCandidate]:
        """The hosts that may be claimed past their offering, best first (candidates are
        read without the room check)."""
        return []

    def enrich(self, session: Session, candidates: Sequence[HostCandidate],
               request: HostRequest) -> list[HostCandidate]:
        """The candidates with the extra facts ``rank`` reads (a query per fact)."""
        return list(candidates)

    def exclusions(self, request: HostRequest) -> tuple[HostExclusion, ...]:
        """The hosts ``rank`` refuses for ``request`` whatever their room, as data: a refusal
        counts them in its one query (``refusals.py``)."""
        return ()


class StorageStrategy(Protocol):
    """Ranks the storage nodes a shared volume may take: the acceptable ones best first, or
    a typed PlacementError."""

    order: ClassVar[str] = "free"  # the SQL order candidates are read in: "free" or "id"

    def rank(self, candidates: Sequence[StorageCandidate], size_bytes: int
             ) -> list[StorageCandidate]: ...


class NetworkStrategy(Protocol):
    """Turns the ``vifs`` request parameter (already checked) into vif plans (pure), or
    raises NetworkSchedulingError or UnknownGroup."""

    def plan(self, vifs: Mapping[str, dict[str, Any]], request_params: Mapping[str, Any]
             ) -> list[VifPlan]: ...


class IpStrategy(Protocol):
    """Leases an address of ``network`` for ``vif`` (or for no vif): ``requested`` when
    given (checked), else one it chooses. ``cursor_locked``: the caller holds the network
    row (``ip_address.lock_networks``)."""

    def allocate(self, session: Session, network: Network, vif: NetworkVif | None,
                 requested: str | None = None, cursor_locked: bool = False
                 ) -> NetworkVifIpLease: ...


class MacStrategy(Protocol):
    """Leases a MAC address and returns it (48-bit integer): ``requested`` when given
    (checked), else one it chooses, which may depend on the instance's host."""

    def allocate(self, session: Session, requested: str | None = None,
                 vendor_id: str | None = None, host_node_id: int | None = None) -> int: ...
