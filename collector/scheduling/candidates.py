"""What the strategies see: frozen rows read in one query, no session attached.

Host and storage strategies rank these and network strategies make VifPlans, all pure, so
they are tested without a database and the claim that follows them (``placement``, through
``capacity``) is the only place that writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MB = 1 << 20
CANDIDATE_LIMIT = 8  # hosts or storage nodes read per round of a placement


@dataclass(frozen=True, slots=True)
class GroupRule:
    """The placement group (pg-...) an instance belongs to, as its placement applies it
    (``groups.py``): hard policies are conditions of the claim, soft ones a ranking."""

    id: int
    uuid: str  # canonical pg-...
    name: str
    policy: str  # affinity, anti-affinity, soft-affinity, soft-anti-affinity
    max_per_host: int = 1
    instance_id: int | None = None  # the member being placed: its own claims never count

    @property
    def hard(self) -> bool:
        return not self.policy.startswith("soft-")


@dataclass(frozen=True, slots=True)
class HostRequest:
    """What an instance asks of a host (memory in MB, local disk in bytes)."""

    instance_id: str
    hypervisor: str
    arch: str
    cpu_cores: int
    memory_size: int
    disk_bytes: int = 0
    account_id: str | None = None
    request_params: Mapping[str, Any] = field(default_factory=dict)
    current_host: str | None = None  # canonical hn-... the instance is on now (HA, ExcludeSame)
    group: GroupRule | None = None  # its placement group, if any


@dataclass(frozen=True, slots=True)
class HostCandidate:
    id: int
    uuid: str  # canonical hn-...
    node_id: str | None
    hypervisor: str
    arch: str
    online: bool
    scheduling_enabled: bool
    # What the host offers placement: physical cpu and memory times its allocation ratios
    # (``ratios.py``), local disk as it is.
    offering_cpu_cores: int
    offering_memory_size: int
    offering_disk_bytes: int
    used_cpu_cores: int = 0
    used_memory_size: int = 0
    used_disk_bytes: int = 0
    # Facts only some strategies read (PipedRules rules), filled in on demand.
    groups: frozenset[str] = frozenset()  # host node groups (hng-...) the host belongs to
    used_quota_weight: float = 0.0  # sum of quota_weight of its alive instances
    account_instances: int = 0  # its alive instances of the request's account

    @property
    def free_cpu_cores(self) -> int:
        return self.offering_cpu_cores - self.used_cpu_cores

    @property
    def free_memory_size(self) -> int:
        return self.offering_memory_size - self.used_memory_size

    @property
    def free_disk_bytes(self) -> int:
        return self.offering_disk_bytes - self.used_disk_bytes

    def schedulable(self) -> bool:
        """Alive and accepting placements (the two are separate facts, S25)."""
        return self.online and self.scheduling_enabled

    def matches(self, request: HostRequest) -> bool:
        return self.hypervisor == request.hypervisor and self.arch == request.arch

    def fits(self, request: HostRequest) -> bool:
        return (self.free_cpu_cores >= request.cpu_cores
                and self.free_memory_size >= request.memory_size
                and self.free_disk_bytes >= request.disk_bytes)


@dataclass(frozen=True, slots=True)
class HostExclusion:
    """Hosts a strategy refuses whatever their room: those in ``hosts``, those outside
    ``only`` (when given) and those not in the host node group ``group`` (when given).
    Data, not a predicate, so that a refusal counts them in SQL (``refusals.py``)."""

    reason: str  # how a refusal names them: "not in host node group hng-web (PipedRules)"
    hosts: tuple[str, ...] = ()  # canonical hn-...
    only: tuple[str, ...] | None = None  # canonical hn-...
    group: str | None = None  # canonical hng-...


@dataclass(frozen=True, slots=True)
class StorageCandidate:
    id: int
    uuid: str  # canonical sn-...
    node_id: str
    storage_type: str
    online: bool
    offering_disk_bytes: int
    used_disk_bytes: int = 0

    @property
    def free_disk_bytes(self) -> int:
        return self.offering_disk_bytes - self.used_disk_bytes


@dataclass(frozen=True, slots=True)
class VifPlan:
    """One vif to create, as the network strategy decided it (networks still by id)."""

    name: str
    index: int
    network: str | None = None  # canonical nw-... or None: a vif without a network
    nat_network: str | None = None
    security_groups: tuple[str, ...] = ()
    mac_addr: str | None = None  # a requested MAC (honoured, unlike the original, S19)
    ipv4_addr: str | None = None  # a requested address in ``network``
    nat_ipv4_addr: str | None = None  # a requested address in ``nat_network``
    # Instead of ``network``: a network group (nwg-..., or ALL_NETWORKS), its member
    # networks tried in ``group_order`` ("sort_index" or "least_allocation") until one
    # has a free address; the vif is created once, whatever the tries (S20).
    network_group: str | None = None
    group_order: str = "sort_index"
    auto_address: bool = True  # False: only a requested address is leased (SpecifyNetwork)


ALL_NETWORKS = "*"  # VifPlan.network_group: the network with the lowest id (FlatSingle)


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A member network of a network group, as the group strategies order them."""

    network: str  # canonical nw-...
    id: int
    sort_index: int = 0
    allocated: int = 0  # addresses taken in it (least_allocation)
