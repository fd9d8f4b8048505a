"""HA evacuation: a host's instances moved off it (spec 2.4-2.5, with S12-S14 fixed).

evacuate_from(session, host_node_id, keep_offline=False)
    -> {"scheduled": [i-...], "failed": [i-...], "halted": [i-...]}
on_node_offline(session, args, sender) -> dict
    the scheduler's handler of ``node_collector/offline``

``evacuate_from``, in the caller's transaction:

* The host row is locked first (a placement claiming it waits; so does a second
  evacuation) and ``scheduling_enabled`` is cleared, so nothing new lands on it. At the
  end the flag is restored to what it was, unless ``keep_offline`` (the failure path: the
  host stays out of placement until an operator enables it again: ``api.set_host_scheduling``,
  ``collector host enable``). Other transactions
  never see the flag down unless it stays down; the row lock keeps placements off the host
  meanwhile. ``evacuated_at`` records when (database clock).
* Instances that are not HA and ``running`` become ``halted`` on the same host, with no
  job (as the original). Non-HA ones in any other state are left to their own flows (the
  original forced them all to ``halted``, S13). They are listed in ``halted``.
* HA instances in ``running``, ``pending``, ``initializing``, ``starting``, ``halting`` or
  ``halted`` are re-placed by the service type's ``host_node_ha_scheduler`` (default: its
  host strategy, S12), each in a SAVEPOINT: the source claim is released, the target's cpu,
  memory and local disk claimed atomically (only a strategy with ``allow_over_commit``
  takes a full host when none has room; the instance's own disk counts once, S14). Local
  volumes become ``pending`` (made again on the new host), attached shared volumes
  ``available``; the instance ``pending`` (a ``halted`` one stays halted on its new host,
  with no boot). Through the outbox, after the commit: ``cleanup`` to the source when it
  is online, then ``run_local_store(inst)`` on ``local-store-handle.<new>`` (LOCAL boot) or
  ``run_vol_store(inst, boot_vol)`` on ``hva-handle.<new>`` (SAN, the same two arguments as
  a start, S14), delayed by ``BOOT_DELAY_SEC`` as a Celery countdown when the source is
  online (its cleanup goes first), and the event ``instance.scheduled``. Listed in
  ``scheduled``.
* A re-placement that fails rolls back its savepoint only: the instance keeps its host
  and claim, its reason goes to ``placement_error``, and it is listed in ``failed``. On a
  source that is not online a ``running`` one is then ``halted`` (it is not running
  anywhere; the original left it ``running`` on a dead host, S13).
* A repeat finds only what is still on the host: already-moved instances are not touched
  again.

``on_node_offline`` (``evacuate_on_node_offline = true`` in the scheduler configuration,
default false): for a host node whose agent went offline, ``evacuate_from(host,
keep_offline=True)``, once per outage: under the host row lock it acts only if the node
is still offline and the host was not evacuated since the node's last heartbeat
(``evacuated_at >= last_ping_at`` means this outage was handled). Several scheduler
workers and repeated events therefore evacuate an outage once; a node that comes back and
fails again is evacuated again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from collector import wire
from collector.db import db_now, job_states, outbox, settings_of
from collector.errors import AddressRefused, InvalidArgument, PlacementError
from collector.models import BOOT_DEV_LOCAL, BOOT_DEV_SAN, LOCAL, HostNode, Instance, NodeState
from collector.scheduling import capacity
from collector.scheduling.candidates import HostCandidate
from collector.scheduling.placement import host_request, place_host
from collector.scheduling.placement_config import ServiceTypeConfig, scheduler_config

log = logging.getLogger(__name__)

RE_PLACED = ("running", "pending", "initializing", "starting", "halting", "halted")
SHARED_ATTACHED = ("attached", "attaching", "detaching")
FAILURES = (PlacementError, AddressRefused)


def _instances(session: Session, host: HostNode) -> list[Instance]:
    """The host's instances evacuation acts on, locked, by id (others are not locked, so
    a placement holding one of them cannot deadlock with us)."""
    return list(session.scalars(
        select(Instance)
        .where(Instance.host_node_id == host.id, Instance.alive(),
               or_(and_(Instance.ha_enabled == 1, Instance.state.in_(RE_PLACED)),
                   and_(Instance.ha_enabled != 1, Instance.state == "running")))
        .options(joinedload(Instance.image, innerjoin=True), selectinload(Instance.volumes))
        .order_by(Instance.id).with_for_update(of=Instance)))


def _re_place(session: Session, inst: Instance, st: ServiceTypeConfig) -> HostCandidate:
    """Claim a new host for ``inst`` and set its and its volumes' states (no dispatch)."""
    boot = inst.image.boot_dev_type
    if boot not in (BOOT_DEV_LOCAL, BOOT_DEV_SAN):
        raise PlacementError(f"Unknown boot type {boot} of image {inst.image.canonical_uuid}")
    if boot == BOOT_DEV_SAN and not inst.boot_volume_id:
        raise PlacementError(f"{inst.canonical_uuid} has no boot volume")
    request = host_request(inst, capacity.local_disk_bytes(session, inst))
    capacity.release_host(session, inst)
    chosen = place_host(session, inst, request, st.host_node_ha, over_commit=True)
    for vol in inst.volumes:
        if not vol.is_alive:
            continue
        if vol.volume_type == LOCAL:
            vol.state = "pending"
        elif vol.state in SHARED_ATTACHED:
            vol.state = "available"
    if inst.state != "halted":
        inst.state = "pending"
    inst.placement_error = None
    inst.placement_generation += 1  # the copy on the old host is stale from now on
    session.flush()
    return chosen


def _dispatch(session: Session, inst: Instance, source: HostNode, source_online: bool,
              target: HostCandidate) -> None:
    """Fence the old host and boot on the new one, in the re-placement's transaction."""
    cuuid, generation = inst.canonical_uuid, inst.placement_generation
    cleanup = fence_source(session, inst, source, source_online, target.node_id) \
        if source.node_id else None
    if inst.state == "halted":
        pass  # halted on its new host: nothing to boot
    elif inst.image.boot_dev_type == BOOT_DEV_SAN:
        # One host at a time on a SAN disk: the boot waits for the old host's cleanup, or
        # for the fence timeout when that host does not answer.
        outbox.jobs.submit(session, wire.node_queue(wire.HVA_HANDLE, target.node_id),
                           wire.HvaJob.RUN_VOL_STORE, cuuid, inst.boot_volume_id,
                           resource_id=cuuid, generation=generation, **_after(session, cleanup))
    else:
        # A local disk is made anew on the new host; only a live old host is waited for
        # (its cleanup first), a silent one is fenced by the generation alone.
        wait = _after(session, cleanup) if source_online else {}
        outbox.jobs.submit(session, wire.node_queue(wire.LOCAL_STORE_HANDLE, target.node_id),
                           wire.LocalStoreJob.RUN_LOCAL_STORE, cuuid, resource_id=cuuid,
                           generation=generation, **wait)
    outbox.events.publish(session, wire.CollectorEvent.INSTANCE_SCHEDULED, [cuuid])


def fence_source(session: Session, inst: Instance, source: HostNode, source_online: bool,
                 target_node_id: str) -> str:
    """The instance moved off ``source`` (its generation already advanced): the jobs that
    host was still to do for it are cancelled, and it is told to drop its copy; the
    cleanup job's id."""
    cuuid, generation = inst.canonical_uuid, inst.placement_generation
    job_states.cancel_on_node(session, cuuid, source.node_id,
                              f"{cuuid} moved to {target_node_id} (generation {generation})")
    # Now when it answers, else when it comes back.
    return outbox.jobs.submit(
        session, wire.node_queue(wire.HVA_HANDLE, source.node_id), wire.HvaJob.CLEANUP,
        cuuid, resource_id=cuuid, generation=generation - 1, held=not source_online)


def _after(session: Session, cleanup: str | None) -> dict[str, Any]:
    """Hold a boot until ``cleanup`` finishes or the fence timeout passes."""
    if cleanup is None:
        return {}
    timeout = timedelta(seconds=settings_of(session).fence_timeout_sec)
    return {"held": True, "after": cleanup, "held_until": db_now(session) + timeout}


def evacuate_from(session: Session, host_node_id: str,
                  keep_offline: bool = False) -> dict[str, list[str]]:
    """Move the host's HA instances to other hosts and halt its other running ones.

    Unknown host -> UnknownHostNodeID; malformed id -> InvalidArgument (nothing written).
    """
    host = HostNode.by_cuuid(session, host_node_id, for_update=True)
    was_enabled = host.scheduling_enabled
    host.scheduling_enabled = False
    if keep_offline:
        # An outage: marked handled. Never before the node's last heartbeat (a
        # transaction's clock may lag a heartbeat committed while it ran). An operator's
        # evacuation marks nothing: an outage in the next seconds is still handled.
        last_ping = host.node.last_ping_at if host.node is not None else None
        host.evacuated_at = max(db_now(session), last_ping) if last_ping else db_now(session)
    session.flush()
    source_online = host.status == "online"
    config = scheduler_config()
    done: dict[str, list[str]] = {"scheduled": [], "failed": [], "halted": []}
    for inst in _instances(session, host):
        cuuid = inst.canonical_uuid
        if not inst.is_ha_enabled:
            inst.state = "halted"
            done["halted"].append(cuuid)
            continue
        try:
            with session.begin_nested():
                target = _re_place(session, inst, config.service_type(inst.service_type))
        except FAILURES as exc:
            inst.placement_error = f"{exc.error_type}: {exc.message}"
            if not source_online and inst.state == "running":
                inst.state = "halted"
            done["failed"].append(cuuid)
            log.warning("evacuation of %s from %s failed: %s", cuuid, host.canonical_uuid,
                        inst.placement_error)
            continue
        _dispatch(session, inst, host, source_online, target)
        done["scheduled"].append(cuuid)
    if not keep_offline:
        host.scheduling_enabled = was_enabled
    session.flush()
    log.info("evacuated %s: %d scheduled, %d failed, %d halted", host.canonical_uuid,
             len(done["scheduled"]), len(done["failed"]), len(done["halted"]))
    return done


def on_node_offline(session: Session, args: list, sender: str) -> dict[str, Any]:
    """``node_collector/offline [node_id]``: evacuate the node's host once per outage,
    when the configuration asks for it."""
    node_id = args[0] if args and isinstance(args[0], str) else None
    if node_id is None:
        raise InvalidArgument(f"node_collector/offline needs [node_id], got {args!r:.60}")
    if not scheduler_config().evacuate_on_node_offline:
        return {"node_id": node_id, "skipped": "evacuate_on_node_offline is off"}
    host = session.scalars(select(HostNode).where(HostNode.node_id == node_id)
                           .with_for_update()).first()
    if host is None:
        return {"node_id": node_id, "skipped": "not a host node"}
    node = session.scalars(select(NodeState).where(NodeState.node_id == node_id)).first()
    if node is not None and node.state != "offline":
        return {"node_id": node_id, "skipped": f"node is {node.state}"}
    last_ping = node.last_ping_at if node is not None else None
    if host.evacuated_at is not None and (last_ping is None or host.evacuated_at >= last_ping):
        return {"node_id": node_id, "skipped": "this outage was already evacuated"}
    result = evacuate_from(session, host.canonical_uuid, keep_offline=True)
    return {"node_id": node_id, "host_node_id": host.canonical_uuid, **result}
