"""What placement claimed, given back: finalizing and destroying instances (capacity, vifs
and their leases, volumes). Used by hva-collector, the API and the scheduler."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from collector import wire
from collector.db import outbox
from collector.errors import DestroyRefused
from collector.models import (
    BackupObject,
    HostnameLease,
    Instance,
    IpLease,
    LoadBalancer,
    MacLease,
    NetworkRoute,
    NetworkService,
    NetworkVif,
    NetworkVifIpLease,
    NetworkVifMonitor,
    NetworkVifSecurityGroup,
    TagMapping,
    Volume,
)
from collector.models.placement import release_migration_allocation
from collector.scheduling import capacity
from collector.timeutil import utcnow

log = logging.getLogger(__name__)

BACKUP_FINAL_STATES = ("available", "deleted", "purged")


def finalize_instance(session: Session, inst: Instance,
                      terminated_at: datetime | None = None) -> list[str]:
    """Delete the instance's volumes (jobs after commit) and destroy it, once.

    Idempotent: volumes already ``deleting``/``deleted`` get no second job, and a
    terminated instance is not destroyed again. Returns the submitted job ids. Callers
    hold the instance's row lock (``load_instance(..., for_update=True)``); the volume rows
    are locked here, so a storage agent's concurrent report applies before or after.
    """
    jobs = []
    for vol in _lock_volumes(session, inst):
        if not vol.is_alive or vol.state in ("deleting", "deleted"):
            continue
        job = _delete_volume_job(session, inst, vol)
        if job:
            jobs.append(job)
    # Terminated while migrating: the destination's claim goes too.
    release_migration_allocation(session, inst.id)
    if inst.state != "terminated":
        destroy_instance(session, inst, terminated_at)
    return jobs


def _lock_volumes(session: Session, inst: Instance) -> list[Volume]:
    """The instance's volumes, locked in id order and re-read (``inst.volumes`` follows)."""
    return list(session.scalars(
        select(Volume).where(Volume.instance_id == inst.id).order_by(Volume.id)
        .with_for_update().execution_options(populate_existing=True)))


def _delete_volume_job(session: Session, inst: Instance, vol: Volume) -> str | None:
    device = vol.volume_device
    if device is None or (vol.is_local_volume and inst.host_node is None):
        # Never placed (or its host is gone): nothing exists on any node to delete.
        vol.destroy()
        return None
    vol.state = "deleting"
    if vol.is_local_volume:
        queue = wire.node_queue(wire.LOCAL_STORE_HANDLE, inst.host_node.node_id)
        return outbox.jobs.submit(session, queue, wire.LocalStoreJob.DELETE_VOLUME,
                                  inst.canonical_uuid,
                                  vol.canonical_uuid, resource_id=vol.canonical_uuid)
    queue = wire.node_queue(wire.STA_HANDLE, device.storage_node.node_id)
    return outbox.jobs.submit(session, queue, wire.StaJob.DELETE_VOLUME, vol.canonical_uuid,
                              resource_id=vol.canonical_uuid)


def destroy_instance(session: Session, inst: Instance, terminated_at: datetime | None = None,
                     force: bool = False) -> None:
    """Soft-delete the instance with the original's cascade (vifs, leases, volumes, labels)."""
    if not force:
        source_ids = [v.canonical_uuid for v in inst.volumes]
        if source_ids:
            busy = session.scalars(select(BackupObject.uuid).where(
                BackupObject.source_volume_id.in_(source_ids),
                BackupObject.state.not_in(BACKUP_FINAL_STATES)).limit(1)).first()
            if busy:
                raise DestroyRefused(
                    f"instance {inst.canonical_uuid} has backups in progress (bo-{busy})")
    if inst.hostname:
        session.execute(delete(HostnameLease).where(
            HostnameLease.account_id == (inst.account_id or ""),
            HostnameLease.hostname == inst.hostname))
    for vif in inst.network_vifs:
        destroy_vif(session, vif, lb_instance=inst.service_type == "lb")
    for vol in inst.volumes:
        if vol.state == "attached":
            vol.guest_device_name = None
            vol.instance_id = None
    capacity.release_host(session, inst)  # a terminated instance holds nothing on its host
    when = terminated_at or utcnow()
    if inst.terminated_at is None:
        inst.terminated_at = when
    inst.state = "terminated"
    inst.status = "offline"
    session.execute(delete(TagMapping).where(TagMapping.uuid == inst.canonical_uuid))
    if inst.service_type == "lb":
        for lb in session.scalars(select(LoadBalancer).where(
                LoadBalancer.instance_id == inst.id, LoadBalancer.deleted_at.is_(None))):
            lb.soft_delete(when)


def release_addresses(session: Session, instance_pk: int, when: datetime | None = None) -> None:
    """Give back the IP leases of the instance's alive vifs (a confirmed stop: the vifs and
    their MAC addresses stay; a start leases addresses again)."""
    when = when or utcnow()
    for lease in session.scalars(
            select(NetworkVifIpLease).join(NetworkVif,
                                           NetworkVif.id == NetworkVifIpLease.network_vif_id)
            .where(NetworkVif.instance_id == instance_pk, NetworkVif.deleted_at.is_(None),
                   NetworkVifIpLease.deleted_at.is_(None))
            .order_by(NetworkVifIpLease.id)):
        release_ip_lease(session, lease, when)


def release_ip_lease(session: Session, lease: NetworkVifIpLease, when: datetime) -> None:
    """Soft-delete the lease and free its address (the guard row) for the next lease."""
    if lease.deleted_at is not None:
        return
    lease.deleted_at, lease.is_deleted = when, lease.id
    session.execute(delete(IpLease).where(IpLease.network_id == lease.network_id,
                                          IpLease.ipv4 == lease.ipv4))


def destroy_vif(session: Session, vif: NetworkVif, lb_instance: bool = False) -> None:
    """Release a vif: MAC lease, IP leases, group memberships, routes, services, monitors."""
    if vif.deleted_at is not None:
        return  # already released (the original re-destroyed them noisily)
    now = utcnow()
    session.execute(delete(MacLease).where(MacLease.mac_addr == int(vif.mac_addr, 16)))
    lease_ids = []
    for lease in vif.ip_leases:
        lease_ids.append(lease.id)
        release_ip_lease(session, lease, now)
    group_ids = [g.id for g in vif.security_groups]
    session.execute(delete(NetworkVifSecurityGroup).where(
        NetworkVifSecurityGroup.network_vif_id == vif.id))
    if lb_instance and group_ids:
        from collector.models import SecurityGroup

        for group in session.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(group_ids))):
            session.delete(group)
    if lease_ids:
        for route in session.scalars(select(NetworkRoute).where(
                NetworkRoute.deleted_at.is_(None),
                (NetworkRoute.inner_lease_id.in_(lease_ids))
                | (NetworkRoute.outer_lease_id.in_(lease_ids)))):
            route.deleted_at = now
            route.is_deleted = route.id
            outbox.events.publish(session, wire.CollectorEvent.NETWORK_ROUTE_DELETED, [route.id])
    session.execute(delete(NetworkService).where(NetworkService.network_vif_id == vif.id))
    for monitor in session.scalars(select(NetworkVifMonitor).where(
            NetworkVifMonitor.network_vif_id == vif.id, NetworkVifMonitor.deleted_at.is_(None))):
        monitor.soft_delete(now)
    vif.deleted_at = now
    session.execute(delete(TagMapping).where(TagMapping.uuid == vif.canonical_uuid))
    session.expire(vif, ["security_groups"])
