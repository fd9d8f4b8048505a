"""The steps that run a strategy and write its choice: claim loops and leases.

place_host(session, instance, request, strategy)   the host strategy ranks, the first host
                                                   that still fits is claimed (capacity)
assign_explicit_host(session, instance, host)      the API's explicit host, checked, claimed
place_storage(session, volume, strategy)           the same for a shared volume; associate
                                                   makes its device row
lease_ip(session, network, vif)                    an address by the service type's IP
                                                   strategy

Every step takes the caller's session and never commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, object_session

from collector import ids
from collector.db import dialect_name
from collector.errors import (
    CollectorError,
    IncompatibleHostNode,
    InsufficientCapacity,
    InvalidArgument,
    InvalidHostNodeID,
    NoMatchingHostNode,
    NoMatchingStorageNode,
    OutOfHostCapacity,
)
from collector.models import (
    ISCSI,
    NFS,
    HostNode,
    Instance,
    IscsiVolume,
    Network,
    NetworkVif,
    NetworkVifIpLease,
    NfsVolume,
    Volume,
)
from collector.scheduling import capacity, groups, refusals
from collector.scheduling.candidates import HostCandidate, HostRequest, StorageCandidate
from collector.scheduling.placement_config import scheduler_config
from collector.scheduling.strategies.host_node import specified_host
from collector.scheduling.strategies.protocols import HostStrategy, StorageStrategy

# Candidate rounds before giving up: each round reads the next best hosts (or storage
# nodes) that fit.
MAX_ROUNDS = 4


def host_request(instance: Instance, disk_bytes: int) -> HostRequest:
    current = None
    if instance.host_node_id is not None:  # read by id: the relationship may be stale
        current = object_session(instance).get(HostNode, instance.host_node_id).canonical_uuid
    return HostRequest(
        instance_id=instance.canonical_uuid, hypervisor=instance.hypervisor or "",
        arch=instance.image.arch, cpu_cores=instance.cpu_cores,
        memory_size=instance.memory_size, disk_bytes=disk_bytes,
        account_id=instance.account_id, request_params=instance.request_params or {},
        current_host=current, group=groups.rule_of(instance))


def place_host(session: Session, instance: Instance, request: HostRequest,
               strategy: HostStrategy, over_commit: bool = False) -> HostCandidate:
    """Rank candidates with ``strategy`` and claim the first that still fits.

    On PostgreSQL a first pass skips hosts another placement holds right now (it would
    only wait for them), a second pass waits: a host is never reported full just because
    it was busy. The ranking is a snapshot: each claim re-checks room, scheduling and the
    node's state in its own statement (``capacity.claim_host``), so a host drained,
    offline or evacuated while the placement waited is passed over like a full one.
    ``over_commit`` (HA re-placement with a strategy that allows it): when no host has
    room, the best-ranked one is claimed past its offering (if still eligible).
    The instance must hold no host claim (``capacity.release_host`` first).

    No host: NoMatchingHostNode (none of the hypervisor and arch is online and enabled, or
    the strategy said so) or InsufficientCapacity, their message the refusal counted host
    by host (``refusals.py``, one more query).
    """
    specific = strategy.specific
    current = instance.host_node_id if strategy.exclude_current else None
    tried: tuple[int, ...] = () if current is None else (current,)
    postgres = dialect_name(session) == "postgresql"
    soft = request.group is not None and not request.group.hard  # ranked here, not in SQL
    if postgres and strategy.sql_ranked and not specific and current is None and not soft:
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
            candidates = capacity.host_candidates(
                session, request, order=strategy.order, exclude_ids=tried,
                limit=groups.read_all(request.group, strategy.candidate_limit))
        candidates = strategy.enrich(session, candidates, request)
        if not candidates:
            break
        try:
            ranked = strategy.rank(candidates, request)
        except (InsufficientCapacity, NoMatchingHostNode) as exc:
            # The strategy's verdict, explained by the whole fleet's count.
            raise type(exc)(refusals.explained(session, request,
                                               strategy.exclusions(request))[1]) from None
        ranked = groups.prefer(session, request.group, ranked)
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
    if over_commit and strategy.allow_over_commit:
        forced = _over_commit(session, instance, request, strategy)
        if forced is not None:
            return forced
    unmatched, why = refusals.explained(session, request, strategy.exclusions(request))
    raise (NoMatchingHostNode if unmatched else InsufficientCapacity)(why)


def _over_commit(session: Session, instance: Instance, request: HostRequest,
                 strategy: HostStrategy) -> HostCandidate | None:
    exclude = (instance.host_node_id,) if instance.host_node_id is not None else ()
    candidates = capacity.host_candidates(session, request, order=strategy.order, limit=1,
                                          exclude_ids=exclude, fit=False)
    ranked = strategy.rank_over_commit(candidates, request)
    if not ranked or not capacity.claim_host(session, ranked[0].id, instance,
                                             request.disk_bytes, over_commit=True):
        return None  # none, or it left placement since it was read
    return ranked[0]


def place_migration(session: Session, instance: Instance, strategy: HostStrategy,
                    job_id: str | None = None) -> HostCandidate:
    """A live migration's destination: the strategy's ranking of the hosts that fit, the
    instance's own host never among them (as ExcludeSame), the first that still takes it
    claimed as its migration allocation (``capacity.claim_migration``: the same WHERE as
    every claim). A strategy naming a host (SpecifyNode) would name the source: the
    candidates' order stands instead. No host: NoMatchingHostNode or InsufficientCapacity,
    explained as placement's refusals."""
    disk = capacity.local_disk_bytes(session, instance)
    request = host_request(instance, disk)
    tried: tuple[int, ...] = (instance.host_node_id,) if instance.host_node_id else ()
    for _ in range(MAX_ROUNDS):
        candidates = capacity.host_candidates(session, request, order=strategy.order,
                                              limit=strategy.candidate_limit,
                                              exclude_ids=tried)
        candidates = strategy.enrich(session, candidates, request)
        if not candidates:
            break
        ranked = candidates if strategy.specific else strategy.rank(candidates, request)
        for candidate in ranked:
            if capacity.claim_migration(session, candidate.id, instance, disk, job_id):
                return candidate
        tried += tuple(c.id for c in candidates)
    unmatched, why = refusals.explained(session, request, strategy.exclusions(request))
    raise (NoMatchingHostNode if unmatched else InsufficientCapacity)(why)


def assign_explicit_host(session: Session, instance: Instance, host_cuuid: object) -> HostNode:
    """The API's explicit host (spec 1.8.1 step 9), checked and claimed.

    Not online -> InvalidHostNodeID; other hypervisor or arch -> IncompatibleHostNode;
    no room for cpu, memory or the instance's local volumes -> OutOfHostCapacity.
    ``scheduling_enabled`` is not required: an operator may place on a drained host. The
    claim checks room and the node's state again in its statement (a node gone offline
    since the check is refused too).
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
    if not capacity.claim_host(session, host.id, instance, disk, drained_ok=True):
        if capacity.node_state(session, host.node_id) != "online":  # changed since read
            raise InvalidHostNodeID(f"host node {host.canonical_uuid} is not online")
        [now] = capacity.host_snapshot(session, host_ids=[host.id])
        raise OutOfHostCapacity(
            f"host node {host.canonical_uuid} has no room for {instance.cpu_cores} cpu cores, "
            f"{instance.memory_size} MB memory and {disk} bytes of local disk: it has "
            f"{now.free_cpu_cores} of {now.offering_cpu_cores} cpu cores, "
            f"{now.free_memory_size} of {now.offering_memory_size} MB memory (after its "
            f"allocation ratios) and {now.free_disk_bytes} bytes of local disk free")
    return host


def place_storage(session: Session, volume: Volume, strategy: StorageStrategy
                  ) -> StorageCandidate:
    """Claim room for the volume on the best node that still has it, and associate it."""
    size = int(volume.size)
    tried: tuple[int, ...] = ()
    passes = (True, False) if dialect_name(session) == "postgresql" else (False,)
    for _ in range(MAX_ROUNDS):
        candidates = capacity.storage_candidates(session, size, exclude_ids=tried,
                                                 order=strategy.order)
        if not candidates:
            break
        for skip_locked in passes:
            for candidate in strategy.rank(candidates, size):
                if capacity.claim_storage(session, candidate.id, volume,
                                          skip_locked=skip_locked):
                    associate(session, volume, candidate)
                    return candidate
        tried += tuple(c.id for c in candidates)
    if not capacity.online_storage_exists(session):
        raise NoMatchingStorageNode(f"no storage node is online for {volume.canonical_uuid}")
    raise InsufficientCapacity(f"no storage node has {size} bytes free for "
                               f"{volume.canonical_uuid}")


def associate(session: Session, volume: Volume, node: StorageCandidate) -> None:
    """The device row of the node's kind (iSCSI or NFS) and the volume's ``volume_type``,
    as the original's ``associate_volume``."""
    if node.storage_type == NFS:
        session.add(NfsVolume(id=volume.id, nfs_storage_node_id=node.id,
                              path=volume.canonical_uuid))
        volume.volume_type = NFS
    else:
        session.add(IscsiVolume(id=volume.id, iscsi_storage_node_id=node.id,
                                path=volume.canonical_uuid))
        volume.volume_type = ISCSI


def lease_ip(session: Session, network: object, vif: object = None,
             service_type: str | None = None, requested: str | None = None
             ) -> NetworkVifIpLease:
    """An address of ``network`` for ``vif`` (or for no vif) by the service type's IP
    strategy (default service type when None). Wrong argument types -> InvalidArgument."""
    if not isinstance(network, Network):
        raise InvalidArgument(f"network must be a Network, got {type(network).__name__}")
    if vif is not None and not isinstance(vif, NetworkVif):
        raise InvalidArgument(f"vif must be a NetworkVif or None, got {type(vif).__name__}")
    if requested is not None and not isinstance(requested, str):
        raise InvalidArgument(f"requested address must be a string, got {requested!r}")
    strategy = scheduler_config().service_type(service_type).ip_address
    return strategy.allocate(session, network, vif, requested)
