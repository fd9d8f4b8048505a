"""Periodic clean-ups of the original's maintenance thread, each one transaction.

expire_ip_handles() -> ids of IP handles whose reservation ran out: an alive handle past
    ``expires_at`` whose address is not on a vif gets its address released and is deleted
delete_expired_windows_passwords() -> ids of instances whose Windows administrator
    password reached ``password_will_be_deleted_at``: the encrypted password is forgotten

Both read the database's clock and are safe to run twice (the second run finds nothing).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from collector.db import db_now, skip_locked
from collector.models import Instance, IpHandle
from collector.services.instance_lifecycle import release_ip_lease


def expire_ip_handles(session: Session) -> list[str]:
    now = db_now(session)
    handles = session.scalars(skip_locked(session, select(IpHandle).where(
        IpHandle.deleted_at.is_(None), IpHandle.expires_at <= now).order_by(IpHandle.id))
        .options(selectinload(IpHandle.ip_lease)))
    expired = []
    for handle in handles:
        lease = handle.ip_lease
        if lease is not None and lease.deleted_at is None and lease.network_vif_id is not None:
            continue  # the address is in use on a vif: the reservation holds
        if lease is not None:
            release_ip_lease(session, lease, now)
        handle.soft_delete(now)
        expired.append(handle.canonical_uuid)
    return expired


def delete_expired_windows_passwords(session: Session) -> list[str]:
    now = db_now(session)
    instances = session.scalars(skip_locked(session, select(Instance).where(
        Instance.terminated_at.is_(None), Instance.password_will_be_deleted_at.is_not(None),
        Instance.password_will_be_deleted_at <= now).order_by(Instance.id)))
    cleared = []
    for inst in instances:
        inst.encrypted_password, inst.password_will_be_deleted_at = None, None
        cleared.append(inst.canonical_uuid)
    return cleared
