"""Capacity that cannot be over-committed.

Each host keeps ``used_cpu_cores`` / ``used_memory_size`` / ``used_disk_bytes`` and each
storage node ``used_disk_bytes``: the sums of the ``host_allocations`` /
``storage_allocations`` rows. A claim is ONE conditional UPDATE::

    UPDATE host_nodes SET used_x = used_x + :x ... WHERE id = :id AND used_x + :x <= offering_x

so two schedulers racing for the last slot of a host cannot both win: on PostgreSQL the
second UPDATE waits for the first transaction and re-checks its WHERE on the new row; on
SQLite writers are serialized. A claim that matches no row did not fit: try the next
candidate. A release deletes the allocation and subtracts what it recorded (idempotent).

``offering_x`` is what the host offers placement: for cpu and memory, the physical figure
times the allocation ratio (``ratios.py``; the host's own, else the scheduler
configuration's default bound into the statement), computed in that WHERE from the host
row's newest version, so a claim that waited obeys a ratio changed meanwhile. A ratio
lowered below what is used takes nothing back: it only refuses new claims.

The same WHERE re-checks everything else that makes the host eligible (``_claimable``):
``scheduling_enabled`` (a drain or an evacuation committed while the claim waited makes
it match nothing) and its node ``online``, read by a sub-SELECT ``FOR SHARE`` of the
node_states row. In PostgreSQL's read committed mode that lock waits for a transaction
changing the row (the sweep marking it offline) and then re-checks ``state = 'online'``
on the row's newest version; held until the claim commits, it makes a sweep skip the node
(``SKIP LOCKED``) until then. So when a claim commits, its host was enabled and online.
Forced claims (a fact recorded: an agent's report, a repair) check nothing.

Candidates are read in one query on the counters (no sums over instances per request).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from collector.db import dialect_name
from collector.models import (
    LOCAL,
    HostAllocation,
    HostNode,
    Instance,
    MigrationAllocation,
    NodeState,
    StorageAllocation,
    StorageNode,
    Volume,
)
from collector.models.placement import release_migration_allocation
from collector.scheduling import groups, ratios
from collector.scheduling.candidates import (
    CANDIDATE_LIMIT,
    MB,
    GroupRule,
    HostCandidate,
    HostRequest,
    StorageCandidate,
)
from collector.scheduling.placement_config import scheduler_config
from collector.timeutil import utcnow

HOST_DISK = cast(HostNode.offering_disk_space_mb, BigInteger) * MB
_STORAGE_DISK = cast(StorageNode.offering_disk_space_mb, BigInteger) * MB


def _offered(physical: Any, host_ratio: Any, default_milli: int) -> Any:
    """SQL: ``physical`` x the host's ratio (else the default), floored (``ratios.offered``:
    integers only, so SQLite and PostgreSQL agree to the unit)."""
    # Constants written into the statement, not bound: at the default ratios the ranking
    # is then the expression of the free-capacity indexes (``models.nodes``), which
    # PostgreSQL reads in order instead of ranking every host.
    milli = func.coalesce(host_ratio, literal_column(str(int(default_milli)), Integer))
    return cast(physical, BigInteger) * milli // literal_column(str(ratios.SCALE), Integer)


def offered_cpu_cores() -> Any:
    """SQL: the cpu cores a host offers placement (physical x allocation ratio)."""
    return _offered(HostNode.offering_cpu_cores, HostNode.cpu_allocation_ratio_milli,
                    scheduler_config().cpu_allocation_ratio_milli)


def offered_memory_size() -> Any:
    """SQL: the memory (MB) a host offers placement (physical x allocation ratio)."""
    return _offered(HostNode.offering_memory_size, HostNode.ram_allocation_ratio_milli,
                    scheduler_config().ram_allocation_ratio_milli)


def _host_order(order: str) -> tuple[Any, ...]:
    """``host_candidates``' order: most free (offered - used) memory or cpu first, or id."""
    if order == "memory":
        return (offered_memory_size() - HostNode.used_memory_size).desc(), HostNode.id
    if order == "cpu":
        return (offered_cpu_cores() - HostNode.used_cpu_cores).desc(), HostNode.id
    return (HostNode.id,)


def _host_columns() -> tuple[Any, ...]:
    """A HostCandidate's columns (the node's state last)."""
    return (HostNode.id, HostNode.uuid, HostNode.node_id, HostNode.hypervisor, HostNode.arch,
            HostNode.scheduling_enabled, offered_cpu_cores().label("offering_cpu_cores"),
            offered_memory_size().label("offering_memory_size"),
            HOST_DISK.label("offering_disk"), HostNode.used_cpu_cores,
            HostNode.used_memory_size, HostNode.used_disk_bytes, NodeState.state)


def _host_candidate(row: Any) -> HostCandidate:
    return HostCandidate(
        id=row.id, uuid=f"hn-{row.uuid}", node_id=row.node_id, hypervisor=row.hypervisor,
        arch=row.arch, online=row.state == "online",
        scheduling_enabled=bool(row.scheduling_enabled),
        offering_cpu_cores=row.offering_cpu_cores,
        offering_memory_size=row.offering_memory_size, offering_disk_bytes=row.offering_disk,
        used_cpu_cores=row.used_cpu_cores, used_memory_size=row.used_memory_size,
        used_disk_bytes=row.used_disk_bytes)


def _schedulable_hosts() -> Any:
    return and_(NodeState.state == "online", HostNode.scheduling_enabled.is_(True))


def _host_fits(cpu_cores: int, memory_size: int, disk_bytes: int) -> Any:
    """Room on the host row for the claim: cpu and memory within what it offers (physical x
    allocation ratio), local disk within its disk."""
    return and_(HostNode.used_cpu_cores + cpu_cores <= offered_cpu_cores(),
                HostNode.used_memory_size + memory_size <= offered_memory_size(),
                HostNode.used_disk_bytes + disk_bytes <= HOST_DISK)


def _claimable(cpu_cores: int, memory_size: int, disk_bytes: int, *, room: bool = True,
               drained_ok: bool = False, group: GroupRule | None = None) -> list[Any]:
    """The WHERE of an UPDATE claiming a host row: room for the claim (unless ``room`` is
    False: an over-commit), scheduling enabled (unless ``drained_ok``: the API's explicit
    host) and the node online, its row locked FOR SHARE (see the module docstring).

    Conditions on the host row's own columns are re-evaluated by PostgreSQL on the row's
    newest version when the UPDATE waited for it; the node's row is not the UPDATE's, so
    only its own lock makes a change committed meanwhile visible."""
    node_online = (select(NodeState.id)
                   .where(NodeState.node_id == HostNode.node_id, NodeState.state == "online")
                   .with_for_update(read=True).exists())
    conditions = [_host_fits(cpu_cores, memory_size, disk_bytes)] if room else []
    if not drained_ok:
        conditions.append(HostNode.scheduling_enabled.is_(True))
    conditions += groups.conditions(group)  # a hard placement group (``groups.hold`` first)
    conditions.append(node_online)  # last: the node's row is locked only for a match
    return conditions


def host_candidates(session: Session, request: HostRequest, order: str = "memory",
                    limit: int | None = CANDIDATE_LIMIT, exclude_ids: tuple[int, ...] = (),
                    fit: bool = True) -> list[HostCandidate]:
    """Online, schedulable hosts of the request's hypervisor and arch that fit it, best
    first (``order``: ``memory``/``cpu`` = most free first, ``id``), ties by lowest id.
    ``limit`` None reads them all; ``fit`` False also those without room (over-commit)."""
    stmt = (select(*_host_columns()).join(NodeState, NodeState.node_id == HostNode.node_id)
            .where(_schedulable_hosts(), HostNode.hypervisor == request.hypervisor,
                   HostNode.arch == request.arch)
            .order_by(*_host_order(order)).limit(limit))
    if fit:
        stmt = stmt.where(_host_fits(request.cpu_cores, request.memory_size,
                                     request.disk_bytes))
    if exclude_ids:
        stmt = stmt.where(HostNode.id.not_in(exclude_ids))
    stmt = stmt.where(*groups.conditions(request.group))
    return [_host_candidate(row) for row in session.execute(stmt)]


def host_snapshot(session: Session, host_ids: list[int] | None = None,
                  uuids: list[str] | None = None) -> list[HostCandidate]:
    """Hosts by id or raw uuid in any state (for explicit choices and error messages)."""
    stmt = select(*_host_columns()).outerjoin(NodeState,
                                              NodeState.node_id == HostNode.node_id)
    if host_ids is not None:
        stmt = stmt.where(HostNode.id.in_(host_ids))
    if uuids is not None:
        stmt = stmt.where(HostNode.uuid.in_(uuids))
    return [_host_candidate(row) for row in session.execute(stmt.order_by(HostNode.id))]


def matching_host_exists(session: Session, hypervisor: str, arch: str | None = None) -> bool:
    """Some online, schedulable host has this hypervisor (and arch, when given)."""
    cond = [_schedulable_hosts(), HostNode.hypervisor == hypervisor]
    if arch is not None:
        cond.append(HostNode.arch == arch)
    return bool(session.scalar(select(exists().where(
        HostNode.node_id == NodeState.node_id, *cond))))


def node_state(session: Session, node_id: str | None) -> str:
    """The node's liveness state as committed now (``offline`` when it has no row)."""
    state = session.scalar(select(NodeState.state).where(NodeState.node_id == node_id)) \
        if node_id else None
    return state or "offline"


def hypervisor_available(session: Session, hypervisor: str) -> bool:
    return matching_host_exists(session, hypervisor)


def some_host_fits_clause() -> Any:
    """EXISTS: some online schedulable host of this hypervisor has this much cpu and memory
    left of what it offers (then ``hypervisor_available`` and ``domain_host_capacity`` both
    hold). It reads hosts until the first that fits, not the whole fleet (the common answer
    of a request's checks, whatever the fleet's size). Its values are bound by
    ``some_host_fits_params``; the api selects it with the image it reads."""
    config = scheduler_config()
    key = (config.cpu_allocation_ratio_milli, config.ram_allocation_ratio_milli)
    if key not in _SOME_HOST_FITS:  # built once per ratio defaults, its values bound
        _SOME_HOST_FITS[key] = exists().where(
            HostNode.node_id == NodeState.node_id, _schedulable_hosts(),
            HostNode.hypervisor == bindparam("fits_hypervisor", type_=String),
            offered_cpu_cores() - HostNode.used_cpu_cores
            >= bindparam("fits_cpu", type_=Integer),
            offered_memory_size() - HostNode.used_memory_size
            >= bindparam("fits_memory", type_=Integer))
    return _SOME_HOST_FITS[key]


def some_host_fits_params(hypervisor: str, cpu_cores: int, memory_size: int) -> dict[str, Any]:
    return {"fits_hypervisor": hypervisor, "fits_cpu": cpu_cores, "fits_memory": memory_size}


_SOME_HOST_FITS: dict[tuple[int, int], Any] = {}


def domain_host_capacity(session: Session, cpu_cores: int, memory_size: int) -> bool:
    """Online schedulable hosts together have this much cpu and memory left (spec 5.4), of
    what they offer (physical x allocation ratio); a host using more than it offers (its
    ratio lowered since) counts none."""
    free_cpu = offered_cpu_cores() - HostNode.used_cpu_cores
    free_memory = offered_memory_size() - HostNode.used_memory_size
    row = session.execute(
        select(func.coalesce(func.sum(case((free_cpu > 0, free_cpu), else_=0)), 0),
               func.coalesce(func.sum(case((free_memory > 0, free_memory), else_=0)), 0))
        .join(NodeState, NodeState.node_id == HostNode.node_id)
        .where(_schedulable_hosts())).one()
    return row[0] >= cpu_cores and row[1] >= memory_size


def domain_storage_capacity(session: Session, size_bytes: int) -> bool:
    """Online storage nodes together have ``size_bytes`` left (shared volumes only, S27)."""
    free = session.scalar(
        select(func.coalesce(func.sum(_STORAGE_DISK - StorageNode.used_disk_bytes), 0))
        .join(NodeState, NodeState.node_id == StorageNode.node_id)
        .where(NodeState.state == "online"))
    return free >= size_bytes


def local_disk_bytes(session: Session, instance: Instance) -> int:
    """Bytes of the instance's alive local volumes (what its host must hold)."""
    return int(session.scalar(select(func.coalesce(func.sum(Volume.size), 0)).where(
        Volume.instance_id == instance.id, Volume.volume_type == LOCAL,
        Volume.deleted_at.is_(None))) or 0)


def _expire(session: Session, cls: type, row_id: int, *attrs: str) -> None:
    obj = session.identity_map.get(session.identity_key(cls, row_id))  # type: ignore[arg-type]
    if obj is not None:
        session.expire(obj, list(attrs))


def _only_unlocked(cls: Any, row_id: int) -> Any:
    """Condition that holds only when no other transaction holds the row (PostgreSQL)."""
    return cls.id.in_(select(cls.id).where(cls.id == row_id)
                      .with_for_update(skip_locked=True).scalar_subquery())


def claim_host(session: Session, host_id: int, instance: Instance, disk_bytes: int,
               force: bool = False, skip_locked: bool = False, *, over_commit: bool = False,
               drained_ok: bool = False) -> bool:
    """Claim the instance's cpu, memory and ``disk_bytes`` on the host; False if it does not
    fit or is no longer eligible (scheduling disabled, node not online) when the claim
    runs. ``over_commit`` claims past the offering (eligibility still checked);
    ``drained_ok`` takes a host whose scheduling is disabled (the API's explicit host,
    which must still be online); ``force`` records the claim whatever the host's state or
    room (a move that already happened).
    ``skip_locked`` (PostgreSQL) also answers False at once when another placement holds the
    host, so the caller tries its next candidate instead of waiting.
    The instance must hold no host claim yet (``release_host`` first)."""
    cpu, memory = instance.cpu_cores, instance.memory_size
    conditions = [] if force else _claimable(cpu, memory, disk_bytes, room=not over_commit,
                                             drained_ok=drained_ok,
                                             group=groups.hold(session, instance))
    if dialect_name(session) == "postgresql":
        target = _only_unlocked(HostNode, host_id) if skip_locked else HostNode.id == host_id
        return _claim_pg(session, and_(target, *conditions), instance, disk_bytes) is not None
    stmt = _add_usage(instance, disk_bytes).where(HostNode.id == host_id, *conditions)
    if session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        return False
    session.execute(insert(HostAllocation).values(
        instance_id=instance.id, host_node_id=host_id, cpu_cores=cpu, memory_size=memory,
        disk_bytes=disk_bytes))
    _claimed(session, instance, host_id)
    return True


def claim_first_unlocked(session: Session, host_ids: list[int], instance: Instance,
                         disk_bytes: int) -> int | None:
    """PostgreSQL: claim the first host of ``host_ids`` (in that order) that fits, is still
    eligible and that no other transaction holds, in one statement; its id, or None when
    none of them can be had right now (``claim_host`` with ``skip_locked`` on each, without
    a round trip per busy host)."""
    if not host_ids:
        return None
    cpu, memory = instance.cpu_cores, instance.memory_size
    group = groups.hold(session, instance)
    wanted = literal(host_ids, ARRAY(Integer))
    # Eligibility read plainly here, to pass over a host that left since it was ranked;
    # the UPDATE checks it again, under the node row's lock.
    first = (select(HostNode.id).join(NodeState, NodeState.node_id == HostNode.node_id)
             .where(HostNode.id.in_(host_ids), _schedulable_hosts(),
                    _host_fits(cpu, memory, disk_bytes), *groups.conditions(group))
             .order_by(func.array_position(wanted, HostNode.id)).limit(1)
             .with_for_update(of=HostNode, skip_locked=True).scalar_subquery())
    return _claim_pg(session, and_(HostNode.id == first,
                                   *_claimable(cpu, memory, disk_bytes, group=group)),
                     instance, disk_bytes)


def claim_best(session: Session, request: HostRequest, instance: Instance, order: str
               ) -> HostCandidate | None:
    """PostgreSQL, for strategies whose ranking IS ``host_candidates``' order: claim the
    best fitting host that no other transaction holds, reading, ranking and claiming in
    one statement (a busy host is passed over wherever it ranks). None when there is no
    such host right now: the caller then ranks and waits as usual.

    Without a hard placement group the statement is built once per order and allocation
    ratio defaults (``_claim_best_statement``), its values bound at each call: building it
    cost more than running it."""
    group = groups.hold(session, instance)
    values = {"claim_cpu": request.cpu_cores, "claim_memory": request.memory_size,
              "claim_disk": request.disk_bytes, "claim_hypervisor": request.hypervisor,
              "claim_arch": request.arch, "claim_instance_id": instance.id,
              "claim_now": utcnow()}
    if group is None:
        config = scheduler_config()
        stmt = _claim_best_statement(order, config.cpu_allocation_ratio_milli,
                                     config.ram_allocation_ratio_milli)
    else:
        stmt = _build_claim_best(order, group)
    row = session.execute(stmt, values).first()
    if row is None:
        return None
    _claimed(session, instance, row.id)
    return _host_candidate(row)


_CLAIM_BEST: dict[tuple[str, int, int], Any] = {}


def _claim_best_statement(order: str, cpu_milli: int, ram_milli: int) -> Any:
    """``_build_claim_best`` without a group, kept per order and ratio defaults (the
    defaults are written into the statement when it is built)."""
    key = (order, cpu_milli, ram_milli)
    if key not in _CLAIM_BEST:
        _CLAIM_BEST[key] = _build_claim_best(order, None)
    return _CLAIM_BEST[key]


def _build_claim_best(order: str, group: GroupRule | None) -> Any:
    """``claim_best``'s statement, the request bound at execution: ``claim_cpu``,
    ``claim_memory``, ``claim_disk``, ``claim_hypervisor``, ``claim_arch``,
    ``claim_instance_id``, ``claim_now`` (not column names: an UPDATE would take a
    parameter named as one of its table's columns for a value to SET)."""
    cpu, memory = bindparam("claim_cpu", type_=Integer), bindparam("claim_memory", type_=Integer)
    disk = bindparam("claim_disk", type_=BigInteger)
    now = bindparam("claim_now", type_=HostAllocation.created_at.type)
    best = (select(HostNode.id).join(NodeState, NodeState.node_id == HostNode.node_id)
            .where(_schedulable_hosts(),
                   HostNode.hypervisor == bindparam("claim_hypervisor", type_=String),
                   HostNode.arch == bindparam("claim_arch", type_=String),
                   _host_fits(cpu, memory, disk), *groups.conditions(group))
            .order_by(*_host_order(order)).limit(1)
            .with_for_update(of=HostNode, skip_locked=True).scalar_subquery())
    claimed = (_add_usage_of(cpu, memory, disk, now)
               .where(HostNode.id == best, *_claimable(cpu, memory, disk, group=group))
               .returning(*_host_columns()[:-1]).cte("claimed"))
    allocated = (insert(HostAllocation).from_select(
        ["instance_id", "host_node_id", "cpu_cores", "memory_size", "disk_bytes", "created_at",
         "updated_at"],
        select(bindparam("claim_instance_id", type_=Integer), claimed.c.id, cpu, memory, disk,
               now, now))
        .returning(HostAllocation.host_node_id).cte("allocated"))
    return (select(claimed, literal("online").label("state"))
            .join(allocated, allocated.c.host_node_id == claimed.c.id))


def _add_usage(instance: Instance, disk_bytes: int) -> Any:
    return _add_usage_of(instance.cpu_cores, instance.memory_size, disk_bytes, utcnow())


def _add_usage_of(cpu_cores: Any, memory_size: Any, disk_bytes: Any, now: Any) -> Any:
    # updated_at given, not left to its onupdate: a statement nested in a CTE cannot
    # compute column defaults
    return update(HostNode).values(
        updated_at=now, used_cpu_cores=HostNode.used_cpu_cores + cpu_cores,
        used_memory_size=HostNode.used_memory_size + memory_size,
        used_disk_bytes=HostNode.used_disk_bytes + disk_bytes)


def _claim_pg(session: Session, where: Any, instance: Instance, disk_bytes: int
              ) -> int | None:
    """The conditional UPDATE of the host row (``where``: the target and what it must
    satisfy) and the allocation row as ONE statement
    (``WITH claimed AS (UPDATE ... RETURNING id) INSERT ... SELECT FROM claimed``)."""
    cpu, memory = instance.cpu_cores, instance.memory_size
    claimed = _add_usage(instance, disk_bytes).where(where).returning(HostNode.id).cte("claimed")
    now = utcnow()
    row = session.execute(
        insert(HostAllocation).from_select(
            ["instance_id", "host_node_id", "cpu_cores", "memory_size", "disk_bytes",
             "created_at", "updated_at"],
            select(literal(instance.id), claimed.c.id, literal(cpu), literal(memory),
                   literal(disk_bytes, BigInteger), literal(now, HostAllocation.created_at.type),
                   literal(now, HostAllocation.updated_at.type)))
        .returning(HostAllocation.host_node_id)
        .execution_options(synchronize_session=False)).first()
    if row is None:
        return None
    _claimed(session, instance, row.host_node_id)
    return row.host_node_id


def _claimed(session: Session, instance: Instance, host_id: int) -> None:
    _expire(session, HostNode, host_id, "used_cpu_cores", "used_memory_size", "used_disk_bytes")
    instance.host_node_id = host_id


def release_host(session: Session, instance: Instance) -> None:
    """Give back what the instance claimed on its host (nothing if it holds no claim)."""
    row = session.execute(delete(HostAllocation).where(HostAllocation.instance_id == instance.id)
                          .returning(HostAllocation.host_node_id, HostAllocation.cpu_cores,
                                     HostAllocation.memory_size, HostAllocation.disk_bytes)
                          .execution_options(synchronize_session=False)).first()
    if row is None:
        return
    session.execute(update(HostNode).where(HostNode.id == row.host_node_id).values(
        used_cpu_cores=HostNode.used_cpu_cores - row.cpu_cores,
        used_memory_size=HostNode.used_memory_size - row.memory_size,
        used_disk_bytes=HostNode.used_disk_bytes - row.disk_bytes)
        .execution_options(synchronize_session=False))
    _expire(session, HostNode, row.host_node_id,
            "used_cpu_cores", "used_memory_size", "used_disk_bytes")


def move_host(session: Session, instance: Instance, host_id: int | None) -> None:
    """The instance is now on ``host_id`` (None: on no host). Its claim follows it, forced:
    an agent reports a fact (a stop, a migration), which the counters must reflect."""
    held = session.execute(select(HostAllocation.host_node_id, HostAllocation.disk_bytes)
                           .where(HostAllocation.instance_id == instance.id)).first()
    if held is not None and held.host_node_id == host_id:
        return
    release_host(session, instance)
    if host_id is not None:
        disk = held.disk_bytes if held is not None else local_disk_bytes(session, instance)
        claim_host(session, host_id, instance, disk, force=True)


def reclaim_host(session: Session, instance: Instance) -> None:
    """Re-record the instance's claim on its current host with its current cpu, memory and
    local volumes (forced: they already exist there)."""
    release_host(session, instance)
    if instance.host_node_id is not None and instance.terminated_at is None:
        claim_host(session, instance.host_node_id, instance,
                   local_disk_bytes(session, instance), force=True)


def claim_migration(session: Session, host_id: int, instance: Instance, disk_bytes: int,
                    job_id: str | None = None) -> bool:
    """Claim a live migration's destination: the same conditional UPDATE as any claim
    (``_claimable``: room after the allocation ratios, scheduling enabled, node online, the
    instance's placement group), recorded as the instance's migration allocation, beside
    the source's host allocation it keeps until the switch. False when the host does not
    take it."""
    cpu, memory = instance.cpu_cores, instance.memory_size
    group = groups.hold(session, instance)  # its placement group's rule, as any claim
    stmt = _add_usage(instance, disk_bytes).where(
        HostNode.id == host_id, *_claimable(cpu, memory, disk_bytes, group=group))
    if session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        return False
    session.execute(insert(MigrationAllocation).values(
        instance_id=instance.id, host_node_id=host_id, cpu_cores=cpu, memory_size=memory,
        disk_bytes=disk_bytes, job_id=job_id))
    _expire(session, HostNode, host_id, "used_cpu_cores", "used_memory_size", "used_disk_bytes")
    return True


def promote_migration(session: Session, instance: Instance) -> int | None:
    """The switch of a migration: the source's claim given back, the destination's claim
    becomes the instance's host allocation (the counters already hold it). The destination
    host's id, or None when the instance holds no migration claim (failed or done)."""
    row = release_migration_allocation(session, instance.id, give_back=False)
    if row is None:
        return None
    release_host(session, instance)
    session.execute(insert(HostAllocation).values(
        instance_id=instance.id, host_node_id=row.host_node_id, cpu_cores=row.cpu_cores,
        memory_size=row.memory_size, disk_bytes=row.disk_bytes))
    instance.host_node_id = row.host_node_id
    return row.host_node_id


def storage_candidates(session: Session, size_bytes: int, limit: int = CANDIDATE_LIMIT,
                       exclude_ids: tuple[int, ...] = (), order: str = "free"
                       ) -> list[StorageCandidate]:
    """Online storage nodes with ``size_bytes`` free: most free first, ties by lowest id
    (``order`` "free"), or by id ("id")."""
    by = (StorageNode.id,) if order == "id" else \
        ((_STORAGE_DISK - StorageNode.used_disk_bytes).desc(), StorageNode.id)
    stmt = (select(StorageNode.id, StorageNode.uuid, StorageNode.node_id,
                   StorageNode.storage_type, _STORAGE_DISK.label("offering_disk"),
                   StorageNode.used_disk_bytes)
            .join(NodeState, NodeState.node_id == StorageNode.node_id)
            .where(NodeState.state == "online",
                   StorageNode.used_disk_bytes + size_bytes <= _STORAGE_DISK)
            .order_by(*by).limit(limit))
    if exclude_ids:
        stmt = stmt.where(StorageNode.id.not_in(exclude_ids))
    return [StorageCandidate(id=r.id, uuid=f"sn-{r.uuid}", node_id=r.node_id,
                             storage_type=r.storage_type, online=True,
                             offering_disk_bytes=r.offering_disk,
                             used_disk_bytes=r.used_disk_bytes)
            for r in session.execute(stmt)]


def online_storage_exists(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(
        StorageNode.node_id == NodeState.node_id, NodeState.state == "online"))))


def claim_storage(session: Session, storage_node_id: int, volume: Volume,
                  force: bool = False, skip_locked: bool = False) -> bool:
    """Claim the volume's size on the storage node; False if it does not fit."""
    size = int(volume.size)
    stmt = update(StorageNode).where(StorageNode.id == storage_node_id).values(
        used_disk_bytes=StorageNode.used_disk_bytes + size)
    if not force:
        stmt = stmt.where(StorageNode.used_disk_bytes + size <= _STORAGE_DISK)
    if skip_locked and dialect_name(session) == "postgresql":
        stmt = stmt.where(_only_unlocked(StorageNode, storage_node_id))
    if session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        return False
    session.execute(insert(StorageAllocation).values(
        volume_id=volume.id, storage_node_id=storage_node_id, disk_bytes=size))
    _expire(session, StorageNode, storage_node_id, "used_disk_bytes")
    return True


def reconcile(session: Session) -> list[dict[str, Any]]:
    """Set every counter to the sum of its allocations; returns the corrections made
    (empty when the counters were true)."""
    session.flush()
    fixes: list[dict[str, Any]] = []
    # A migrating instance's destination claim counts on its host too.
    held = union_all(*(select(t.host_node_id, t.cpu_cores, t.memory_size, t.disk_bytes)
                       for t in (HostAllocation, MigrationAllocation))).subquery()
    sums = {r.host_node_id: r for r in session.execute(
        select(held.c.host_node_id, func.sum(held.c.cpu_cores).label("cpu"),
               func.sum(held.c.memory_size).label("memory"),
               func.sum(held.c.disk_bytes).label("disk"))
        .group_by(held.c.host_node_id))}
    for host in session.execute(select(HostNode.id, HostNode.uuid, HostNode.used_cpu_cores,
                                       HostNode.used_memory_size, HostNode.used_disk_bytes)):
        s = sums.get(host.id)
        want = (int(s.cpu), int(s.memory), int(s.disk)) if s else (0, 0, 0)
        have = (host.used_cpu_cores, host.used_memory_size, host.used_disk_bytes)
        if want != have:
            fixes.append({"host_node_id": f"hn-{host.uuid}", "was": have, "now": want})
            session.execute(update(HostNode).where(HostNode.id == host.id).values(
                used_cpu_cores=want[0], used_memory_size=want[1], used_disk_bytes=want[2])
                .execution_options(synchronize_session=False))
            _expire(session, HostNode, host.id,
                    "used_cpu_cores", "used_memory_size", "used_disk_bytes")
    disk = dict(session.execute(select(StorageAllocation.storage_node_id,
                                       func.sum(StorageAllocation.disk_bytes))
                                .group_by(StorageAllocation.storage_node_id)).all())
    for node in session.execute(select(StorageNode.id, StorageNode.uuid,
                                       StorageNode.used_disk_bytes)):
        want_disk = int(disk.get(node.id) or 0)
        if want_disk != node.used_disk_bytes:
            fixes.append({"storage_node_id": f"sn-{node.uuid}", "was": node.used_disk_bytes,
                          "now": want_disk})
            session.execute(update(StorageNode).where(StorageNode.id == node.id).values(
                used_disk_bytes=want_disk).execution_options(synchronize_session=False))
            _expire(session, StorageNode, node.id, "used_disk_bytes")
    return fixes
