"""Periodic clean-ups of the original's maintenance thread, each one transaction.

expire_ip_handles() -> ids of IP handles whose reservation ran out: an alive handle past
    ``expires_at`` whose address is not on a vif gets its address released and is deleted
delete_expired_windows_passwords() -> ids of instances whose Windows administrator
    password reached ``password_will_be_deleted_at``: the encrypted password is forgotten

purge_sent_outbox(older_than_seconds) -> how many outbox rows sent more than that long ago
    were deleted (unsent and dead-lettered rows stay)
purge_finished_jobs(older_than_seconds) -> how many ledger rows finished more than that
    long ago were deleted; a parent stays while it has a child that stays

All read the database's clock and are safe to run twice, even at once (rows another run
holds are skipped; the second run finds nothing). Purges delete at most ``limit`` rows per
run; the next run goes on.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, aliased, selectinload

from collector.db import db_now, skip_locked
from collector.models import Instance, IpHandle, OutboxMessage, QueuedJob
from collector.scheduling.teardown import release_ip_lease


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


PURGE_LIMIT = 10_000
JOB_TREE_LEVELS = 8  # job trees deeper than this lose a level per run


def purge_sent_outbox(session: Session, older_than_seconds: int,
                      limit: int = PURGE_LIMIT) -> int:
    cutoff = db_now(session) - timedelta(seconds=older_than_seconds)
    ids = list(session.scalars(skip_locked(session, select(OutboxMessage.id).where(
        OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < cutoff)
        .order_by(OutboxMessage.id).limit(limit))))
    if ids:
        session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return len(ids)


def purge_finished_jobs(session: Session, older_than_seconds: int,
                        limit: int = PURGE_LIMIT) -> int:
    cutoff = db_now(session) - timedelta(seconds=older_than_seconds)
    child = aliased(QueuedJob)
    deleted = 0
    for _ in range(JOB_TREE_LEVELS):  # leaves first: a parent goes once its children went
        ids = list(session.scalars(skip_locked(session, select(QueuedJob.id).where(
            QueuedJob.state == "finished", QueuedJob.finished_at < cutoff,
            ~exists().where(child.parent_id == QueuedJob.id))
            .order_by(QueuedJob.id).limit(limit - deleted))))
        if not ids:
            break
        session.execute(delete(QueuedJob).where(QueuedJob.id.in_(ids)))
        deleted += len(ids)
        if deleted >= limit:
            break
    return deleted
