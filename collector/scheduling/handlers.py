"""The scheduler's jobs as domain steps: schedule_instance, schedule_start_instance,
schedule_volume. Session first; the caller commits.

Each step is guarded by the state it expects (``scheduling``), read under a row lock: a
repeated or late job answers ``{"outcome": "noop"}`` and changes nothing (S1, S4).
Placement runs in a SAVEPOINT. A placement error rolls it back, then the failure is applied
in the outer transaction and RETURNED, so it commits (the task layer fails the ledger job
after the commit):
* a new instance -> ``terminated``, vifs and leases released, volumes deleted;
* a start -> back to ``stopped``, nothing destroyed (the original destroyed it, S2);
* a volume -> ``deleted``;
with the reason in ``placement_error``. Dispatch goes through the outbox (spec 1.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from collector import ids, wire
from collector.db import outbox
from collector.errors import (
    AddressRefused,
    CollectorError,
    OutOfHostCapacity,
    PlacementError,
    UnknownInstanceID,
)
from collector.models import (
    BOOT_DEV_LOCAL,
    BOOT_DEV_SAN,
    LOCAL,
    HostAllocation,
    HostNode,
    Instance,
    LocalVolume,
    NetworkVifIpLease,
    Volume,
)
from collector.scheduling import batch_memo, capacity, teardown
from collector.scheduling.placement import host_request, place_host, place_storage
from collector.scheduling.placement_config import (
    SchedulerConfig,
    ServiceTypeConfig,
    scheduler_config,
)
from collector.scheduling.vifs import create_vifs

EXPECTED_STATE = "scheduling"
# What a placement may fail with: the strategies' typed errors, and a requested address
# someone else took between the API's check and the placement.
PLACEMENT_FAILURES = (PlacementError, AddressRefused)


def _noop(kind: str, cuuid: str, state: str) -> dict[str, Any]:
    return {"outcome": "noop", f"{kind}_id": cuuid, "state": state}


def noop_answer(inst: Instance) -> dict[str, Any]:
    """What a repeated or late ``schedule_instance`` answers."""
    return _noop("instance", inst.canonical_uuid, inst.state)


def _failed(kind: str, cuuid: str, exc: PlacementError | AddressRefused,
            state: str) -> dict[str, Any]:
    return {"outcome": "failed", f"{kind}_id": cuuid, "error_type": exc.error_type,
            "message": exc.message, "state": state}


def _reason(exc: PlacementError | AddressRefused) -> str:
    return f"{exc.error_type}: {exc.message}"


def _check_boot_type(inst: Instance) -> int:
    boot = inst.image.boot_dev_type
    if boot not in (BOOT_DEV_LOCAL, BOOT_DEV_SAN):
        raise PlacementError(f"Unknown boot type {boot} of image {inst.image.canonical_uuid}")
    return boot


@dataclass(frozen=True)
class HeldHost:
    uuid: str  # canonical hn-...
    node_id: str


def load_instance(session: Session, instance_id: str) -> Instance:
    """The instance under a row lock (a concurrent duplicate job waits, then sees the new
    state), with what placement reads: image, volumes, vifs."""
    raw = ids.raw_part(instance_id, Instance.prefix)
    inst = session.scalars(
        select(Instance).where(Instance.uuid == raw)
        .options(joinedload(Instance.image, innerjoin=True), selectinload(Instance.volumes),
                 selectinload(Instance.network_vifs))
        .with_for_update(of=Instance)).first()
    if inst is None:
        raise UnknownInstanceID(f"unknown id '{instance_id}'")
    return inst


def _hold_host(session: Session, inst: Instance, st: ServiceTypeConfig,
               local_bytes: int) -> HeldHost:
    """Choose and claim a host, or keep the one the API assigned (and claimed)."""
    if inst.host_node_id is None:
        chosen = place_host(session, inst, host_request(inst, local_bytes), st.host_node)
        return HeldHost(chosen.uuid, chosen.node_id or "")
    if session.scalar(select(HostAllocation.id).where(
            HostAllocation.instance_id == inst.id)) is None:
        # Assigned without a claim (older API, a repair): claim it now or fail.
        # The operator's choice, as at the API: a drained host is honoured, not a silent one.
        if not capacity.claim_host(session, inst.host_node_id, inst, local_bytes,
                                   drained_ok=True):
            raise OutOfHostCapacity(f"the assigned host is offline or has no room for "
                                    f"{inst.canonical_uuid}")
    host = session.get(HostNode, inst.host_node_id)
    return HeldHost(host.canonical_uuid, host.node_id or "")


def _place_new_instance(session: Session, inst: Instance, config: SchedulerConfig,
                        with_vifs: bool = True, flush: bool = True
                        ) -> tuple[HeldHost, dict[int, str], list[str]]:
    """Host, local and shared volumes, dispatch, vifs (unless ``with_vifs`` is False);
    returns the host, {volume id: sta node} and the job ids. Row changes are flushed
    together (no autoflush in between); ``flush`` False: left for the caller's flush
    (a batch flushes all its instances' rows at once)."""
    st = config.service_type(inst.service_type)
    _check_boot_type(inst)
    volumes = [v for v in inst.volumes if v.is_alive]
    local_bytes = sum(int(v.size) for v in volumes if v.volume_type == LOCAL)
    host = _hold_host(session, inst, st, local_bytes)
    storage: dict[int, str] = {}
    for vol in volumes:
        if vol.state != EXPECTED_STATE:
            continue
        if vol.volume_type == LOCAL:
            session.add(LocalVolume(id=vol.id, instance_id=inst.id, mount_label="instance",
                                    path=vol.canonical_uuid))
        elif vol.volume_type is None:
            storage[vol.id] = place_storage(session, vol, st.storage_node).node_id
        vol.state = "pending"
    inst.state = "pending"
    inst.placement_error = None
    jobs = _dispatch_new(session, inst, host, storage, config)
    if not flush:
        return host, storage, jobs
    session.flush()  # the state changes and the dispatch rows together
    # Vifs last: they lock the network's IP cursor until the commit, so the less runs after
    # them, the less concurrent placements wait. The dispatch is written before them, in
    # this savepoint: a failure below rolls its outbox rows back with everything else (the
    # after-commit relay then finds no such rows).
    if with_vifs:
        create_missing_vifs(session, inst)
    return host, storage, jobs


def needs_vifs(inst: Instance) -> bool:
    return not any(vif.is_alive for vif in inst.network_vifs)  # soft-deleted ones do not count


def create_missing_vifs(session: Session, inst: Instance, flush: bool = True) -> None:
    """The vifs of its request, with MAC and IP leases, when it has none yet (``flush``
    False: their rows stay pending for the caller's flush)."""
    if needs_vifs(inst):
        create_vifs(session, inst, scheduler_config().service_type(inst.service_type).name)
        if flush:
            session.flush()


def _sta_node_of(vol: Volume, placed: dict[int, str]) -> str | None:
    if vol.id in placed:
        return placed[vol.id]
    device = vol.volume_device
    return device.storage_node.node_id if device is not None and not vol.is_local_volume \
        else None


def _dispatch_new(session: Session, inst: Instance, host: HeldHost, placed: dict[int, str],
                  config: SchedulerConfig) -> list[str]:
    cuuid = inst.canonical_uuid
    jobs = []
    if config.openvnet:
        outbox.tasks.send(session, wire.VNET_COLLECTOR, wire.VnetTask.SCHEDULE_VIFS, cuuid)
    for vol in inst.volumes:
        if vol.is_alive and vol.state == "pending" and not vol.is_local_volume:
            node = _sta_node_of(vol, placed)
            if node:
                jobs.append(outbox.jobs.submit(
                    session, wire.node_queue(wire.STA_HANDLE, node),
                    wire.StaJob.CREATE_VOLUME_AND_RUN_INSTANCE, vol.canonical_uuid, cuuid,
                    resource_id=vol.canonical_uuid, generation=inst.placement_generation))
    if inst.image.boot_dev_type == BOOT_DEV_LOCAL:
        jobs.append(outbox.jobs.submit(
            session, wire.node_queue(wire.LOCAL_STORE_HANDLE, host.node_id),
            wire.LocalStoreJob.RUN_LOCAL_STORE, cuuid, resource_id=cuuid,
            generation=inst.placement_generation))
    outbox.events.publish(session, wire.CollectorEvent.INSTANCE_SCHEDULED, [cuuid])
    return jobs


def schedule_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """Place a new instance (state ``scheduling``) and dispatch its boot."""
    return schedule_loaded(session, load_instance(session, instance_id))


def schedule_loaded(session: Session, inst: Instance,
                    vifs_later: list[Instance] | None = None) -> dict[str, Any]:
    """``schedule_instance`` of an instance already read under its row lock.

    ``vifs_later`` (a batch, ``batch.py``): an instance that still needs vifs is appended
    to it instead of getting them now; the caller creates them (``create_missing_vifs``)
    and must undo the whole batch if that fails."""
    if inst.state != EXPECTED_STATE:
        return _noop("instance", inst.canonical_uuid, inst.state)
    config = scheduler_config()
    try:
        with session.begin_nested(), session.no_autoflush:
            host, placed, jobs = _place_new_instance(session, inst, config,
                                                     with_vifs=vifs_later is None)
    except PLACEMENT_FAILURES as exc:
        batch_memo.forget(session)  # locks taken in the savepoint went with it
        return refuse_new_instance(session, inst, exc)
    if vifs_later is not None and needs_vifs(inst):
        vifs_later.append(inst)
    return _placed_answer(inst, host, placed, jobs)


def place_unguarded(session: Session, inst: Instance, vifs_later: list[Instance]
                    ) -> dict[str, Any]:
    """``schedule_loaded`` for a batch that undoes itself whole on a failure: no savepoint
    of its own, a placement failure raised (not applied), the rows left for the batch's
    one flush (the caller holds autoflush off), the vifs to the caller (``vifs_later``)."""
    if inst.state != EXPECTED_STATE:
        return _noop("instance", inst.canonical_uuid, inst.state)
    host, placed, jobs = _place_new_instance(session, inst, scheduler_config(),
                                             with_vifs=False, flush=False)
    if needs_vifs(inst):
        vifs_later.append(inst)
    return _placed_answer(inst, host, placed, jobs)


def _placed_answer(inst: Instance, host: HeldHost, placed: dict[int, str],
                   jobs: list[str]) -> dict[str, Any]:
    return {"outcome": "placed", "instance_id": inst.canonical_uuid,
            "host_node_id": host.uuid, "jobs": jobs,
            "storage_node_ids": {v.canonical_uuid: placed[v.id]
                                 for v in inst.volumes if v.id in placed}}


def refuse_new_instance(session: Session, inst: Instance,
                        exc: PlacementError | AddressRefused) -> dict[str, Any]:
    """Apply a new instance's placement failure (``terminated``, the reason kept, what it
    held freed) and answer it."""
    inst.placement_error = _reason(exc)
    teardown.finalize_instance(session, inst)
    session.flush()
    return _failed("instance", inst.canonical_uuid, exc, inst.state)


def _lease_missing_addresses(session: Session, inst: Instance, st: ServiceTypeConfig) -> None:
    """A stop released the addresses: lease new ones (manual ones are not restored)."""
    vifs = [v for v in inst.network_vifs if v.is_alive]
    held = {(lease.network_vif_id, lease.network_id) for lease in session.scalars(
        select(NetworkVifIpLease).where(
            NetworkVifIpLease.network_vif_id.in_([v.id for v in vifs]),
            NetworkVifIpLease.deleted_at.is_(None)))}
    for vif in vifs:
        for net in (vif.network, vif.nat_network):  # the NAT lease from the NAT network (S15)
            if net is not None and (vif.id, net.id) not in held:
                st.ip_address.allocate(session, net, vif)


def schedule_start_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """Place a stopped instance again (state ``scheduling``) and dispatch its boot."""
    inst = load_instance(session, instance_id)
    if inst.state != EXPECTED_STATE:
        return _noop("instance", inst.canonical_uuid, inst.state)
    config = scheduler_config()
    try:
        with session.begin_nested():
            st = config.service_type(inst.service_type)
            boot = _check_boot_type(inst)
            boot_volume = _boot_volume(session, inst)
            if boot == BOOT_DEV_SAN and boot_volume is None:
                raise PlacementError(f"{inst.canonical_uuid} has no boot volume")
            local_bytes = capacity.local_disk_bytes(session, inst)
            host = _hold_host(session, inst, st, local_bytes)
            inst.state = "pending"
            inst.placement_error = None
            inst.placement_generation += 1  # a new placement: reports of the last one are stale
            session.flush()
            job = _dispatch_start(session, inst, host, boot, boot_volume)
            _lease_missing_addresses(session, inst, st)  # last: it locks network cursors
            session.flush()
    except PLACEMENT_FAILURES as exc:
        inst.state = "stopped"  # nothing destroyed: the instance can be started again
        inst.placement_error = _reason(exc)
        session.flush()
        return _failed("instance", inst.canonical_uuid, exc, inst.state)
    return {"outcome": "placed", "instance_id": inst.canonical_uuid,
            "host_node_id": host.uuid, "jobs": [job]}


def _boot_volume(session: Session, inst: Instance) -> Volume | None:
    if not inst.boot_volume_id:
        return None
    try:
        return Volume.find_cuuid(session, inst.boot_volume_id)
    except CollectorError:
        raise PlacementError(f"{inst.canonical_uuid} has a malformed boot volume id "
                             f"{inst.boot_volume_id!r}") from None


def _dispatch_start(session: Session, inst: Instance, host: HeldHost, boot: int,
                    boot_volume: Volume | None) -> str:
    cuuid = inst.canonical_uuid
    generation = inst.placement_generation
    if boot == BOOT_DEV_SAN:
        job = outbox.jobs.submit(session, wire.node_queue(wire.HVA_HANDLE, host.node_id),
                                 wire.HvaJob.RUN_VOL_STORE, cuuid, boot_volume.canonical_uuid,
                                 resource_id=cuuid, generation=generation)
    else:
        job = outbox.jobs.submit(session, wire.node_queue(wire.LOCAL_STORE_HANDLE, host.node_id),
                                 wire.LocalStoreJob.RUN_LOCAL_STORE, cuuid, resource_id=cuuid,
                                 generation=generation)
    outbox.events.publish(session, wire.CollectorEvent.INSTANCE_SCHEDULED, [cuuid])
    return job


def schedule_volume(session: Session, volume_id: str) -> dict[str, Any]:
    """Place a standalone volume (state ``scheduling``) and have its node create it."""
    vol = Volume.by_cuuid(session, volume_id, for_update=True)
    if vol.state != EXPECTED_STATE or not vol.is_alive:
        return _noop("volume", vol.canonical_uuid, vol.state)
    try:
        with session.begin_nested():
            st = scheduler_config().service_type(vol.service_type)
            node = place_storage(session, vol, st.storage_node)
            vol.state = "pending"
            vol.placement_error = None
            session.flush()
    except PLACEMENT_FAILURES as exc:
        vol.placement_error = _reason(exc)
        vol.destroy()
        session.flush()
        return _failed("volume", vol.canonical_uuid, exc, vol.state)
    job = outbox.jobs.submit(session, wire.node_queue(wire.STA_HANDLE, node.node_id),
                             wire.StaJob.CREATE_VOLUME,
                             vol.canonical_uuid, resource_id=vol.canonical_uuid)
    return {"outcome": "placed", "volume_id": vol.canonical_uuid,
            "storage_node_id": node.uuid, "jobs": [job]}
