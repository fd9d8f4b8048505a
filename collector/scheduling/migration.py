"""Live migration: a running instance moved to another host while it runs
(``running -> migrating -> running``).

start(session, inst, host_node_id=None) -> job id
    The destination claimed before anything moves: the named host (checked: not the
    source, online, scheduling enabled, same hypervisor and arch, room) or the one the
    service type's host strategy ranks best among the others (``placement.place_migration``).
    The claim is a migration allocation beside the source's host allocation (both count
    until the switch). The instance goes ``migrating`` and ``run_migration(inst,
    generation)`` goes to ``migration-handle.<dest>``, all in the caller's transaction.
switch(session, inst, host, generation) -> True
    The destination's agent reports its copy running (``hva-collector.
    switch_instance_host_node`` with the generation of its job): the source's claim is
    given back, the destination's becomes the host allocation, the instance ``running`` on
    the destination with generation + 1 (the source's copy is fenced), the source's queued
    jobs for it cancelled and ``cleanup`` sent to the source (held until it is back when it
    is not online), as an evacuation does.

A migration that fails (its job finished without a switch: failed, cancelled, given up by
the reaper, or an agent that skipped it) leaves the instance ``running`` on the source and
frees the destination's claim: the job ledger does it when the job finishes
(``collector.db.job_states``), under the instance's row lock, as ``switch`` takes it, so
exactly one of the two wins.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collector import wire
from collector.db import outbox
from collector.errors import (
    IncompatibleHostNode,
    InvalidHostNodeID,
    InvalidInstanceState,
    InvalidMigrationTarget,
    OutOfHostCapacity,
    PlacementGenerationRequired,
    StalePlacement,
)
from collector.models import HostNode, Instance, MigrationAllocation
from collector.scheduling import capacity
from collector.scheduling.evacuation import fence_source
from collector.scheduling.placement import place_migration
from collector.scheduling.placement_config import scheduler_config


def start(session: Session, inst: Instance, host_node_id: str | None = None) -> str:
    """Claim the destination and send the migration job; the job's id. The caller holds
    the instance's row lock and checked it is ``running``."""
    source = inst.host_node
    if source is None or not source.node_id:
        raise InvalidInstanceState(f"cannot migrate {inst.canonical_uuid}: no host runs it")
    if host_node_id is None:
        strategy = scheduler_config().service_type(inst.service_type).host_node
        dest_node = place_migration(session, inst, strategy).node_id
    else:
        dest_node = _claim_named(session, inst, HostNode.by_cuuid(session, host_node_id))
    cuuid, generation = inst.canonical_uuid, inst.placement_generation
    inst.state = "migrating"
    inst.placement_error = None
    job = outbox.jobs.submit(session, wire.node_queue(wire.MIGRATION_HANDLE, dest_node),
                             wire.MigrationJob.RUN_MIGRATION, cuuid, generation,
                             resource_id=cuuid, generation=generation)
    # The claim belongs to this job: its end without a switch frees it.
    session.execute(update(MigrationAllocation).where(MigrationAllocation.instance_id == inst.id)
                    .values(job_id=job).execution_options(synchronize_session=False))
    return job


def _claim_named(session: Session, inst: Instance, host: HostNode) -> str:
    """The operator's destination, checked and claimed; its node id."""
    name = host.canonical_uuid
    if host.id == inst.host_node_id:
        raise InvalidMigrationTarget(f"{inst.canonical_uuid} already runs on {name}")
    if host.status != "online" or not host.node_id:
        raise InvalidHostNodeID(f"host node {name} is not online")
    if not host.scheduling_enabled:
        raise InvalidMigrationTarget(f"host node {name} takes no placements (disabled)")
    if host.hypervisor != inst.hypervisor or host.arch != inst.image.arch:
        raise IncompatibleHostNode(f"host node {name} is {host.arch} {host.hypervisor}, the "
                                   f"instance needs {inst.image.arch} {inst.hypervisor}")
    disk = capacity.local_disk_bytes(session, inst)
    if not capacity.claim_migration(session, host.id, inst, disk):
        # Read again: the claim's own WHERE may have seen the node leave or a drain.
        if capacity.node_state(session, host.node_id) != "online":
            raise InvalidHostNodeID(f"host node {name} is not online")
        [now] = capacity.host_snapshot(session, host_ids=[host.id])
        if not now.scheduling_enabled:
            raise InvalidMigrationTarget(f"host node {name} takes no placements (disabled)")
        raise OutOfHostCapacity(
            f"host node {name} has no room for {inst.cpu_cores} cpu cores, "
            f"{inst.memory_size} MB memory and {disk} bytes of local disk: it has "
            f"{now.free_cpu_cores} cpu cores, {now.free_memory_size} MB memory (after its "
            f"allocation ratios) and {now.free_disk_bytes} bytes of local disk free")
    return host.node_id


def switch(session: Session, inst: Instance, host: HostNode, generation: int | None) -> bool:
    """The destination's copy runs: the instance is moved there (see the module doc)."""
    cuuid = inst.canonical_uuid
    if generation is None:
        raise PlacementGenerationRequired(
            f"{cuuid} is migrating: the switch must carry the migration job's generation")
    if generation != inst.placement_generation:
        raise StalePlacement(f"{cuuid} was placed again (generation "
                             f"{inst.placement_generation}); this switch is of generation "
                             f"{generation}: drop that copy")
    held = session.scalar(select(MigrationAllocation.host_node_id)
                          .where(MigrationAllocation.instance_id == inst.id))
    if inst.state != "migrating" or held != host.id:
        raise StalePlacement(f"no migration of {cuuid} to {host.node_id} is in progress "
                             f"(it is {inst.state}): drop that copy")
    source = session.get(HostNode, inst.host_node_id)
    capacity.promote_migration(session, inst)
    inst.state = "running"
    inst.placement_generation += 1  # the source's copy is stale from now on
    session.flush()
    if source is not None and source.node_id:
        fence_source(session, inst, source, source.status == "online", host.node_id or "")
    return True
