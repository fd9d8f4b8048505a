"""Periodic clean-ups: IP reservations that ran out, Windows passwords past their time."""

from datetime import timedelta

from sqlalchemy import select

from collector.models import IpLease
from collector.services import maintenance
from collector.timeutil import utcnow
from workers.demo.world import make


def _guard_exists(session, net, ipv4: int) -> bool:
    return session.scalars(select(IpLease).where(
        IpLease.network_id == net.id, IpLease.ipv4 == ipv4)).first() is not None


def test_expired_unused_reservation_is_released_and_others_stay(session):
    net = make.network(session, "10.40.0.0/24")
    past, future = utcnow() - timedelta(minutes=5), utcnow() + timedelta(hours=1)
    expired = make.ip_handle(session, net, "10.40.0.50", expires_at=past)
    in_use = make.ip_handle(session, net, "10.40.0.51", expires_at=past,
                                   on=make.vif(session, None, net))
    not_yet = make.ip_handle(session, net, "10.40.0.52", expires_at=future)
    forever = make.ip_handle(session, net, "10.40.0.53")
    released = expired.ip_lease

    assert maintenance.expire_ip_handles(session) == [expired.canonical_uuid]
    assert expired.deleted_at is not None and released.deleted_at is not None
    assert not _guard_exists(session, net, released.ipv4)  # the address can be leased again
    for kept in (in_use, not_yet, forever):
        assert kept.deleted_at is None and kept.ip_lease.deleted_at is None
        assert _guard_exists(session, net, kept.ip_lease.ipv4)
    assert maintenance.expire_ip_handles(session) == []  # a second run finds nothing


def test_windows_password_is_forgotten_once_its_time_has_come(session):
    host = make.host_node(session)
    due = make.instance(session, host, encrypted_password="c2VjcmV0",
                               password_will_be_deleted_at=utcnow() - timedelta(seconds=1))
    later = make.instance(session, host, encrypted_password="bGF0ZXI=",
                                 password_will_be_deleted_at=utcnow() + timedelta(days=1))
    kept = make.instance(session, host, encrypted_password="a2VwdA==")

    assert maintenance.delete_expired_windows_passwords(session) == [due.canonical_uuid]
    assert (due.encrypted_password, due.password_will_be_deleted_at) == (None, None)
    assert later.encrypted_password == "bGF0ZXI=" and kept.encrypted_password == "a2VwdA=="
    assert maintenance.delete_expired_windows_passwords(session) == []


def _outbox_row(session, sent_ago=None, created_ago=timedelta(hours=3), failed=False):
    from collector.ids import new_uuid
    from collector.models import OutboxMessage

    now = utcnow()
    row = OutboxMessage(kind="task", name="x.retention", queue="x", payload={"args": []},
                        task_id=f"msg-{new_uuid()}", created_at=now - created_ago,
                        sent_at=now - sent_ago if sent_ago is not None else None,
                        failed_at=now - created_ago if failed else None)
    session.add(row)
    session.flush()
    return row


def test_sent_outbox_rows_past_their_retention_are_deleted_and_nothing_else(session):
    from collector.models import OutboxMessage

    old_sent = _outbox_row(session, sent_ago=timedelta(hours=2))
    new_sent = _outbox_row(session, sent_ago=timedelta(minutes=5))
    unsent = _outbox_row(session)
    failed = _outbox_row(session, failed=True)
    assert maintenance.purge_sent_outbox(session, 3600) >= 1
    kept = {r.id for r in session.query(OutboxMessage).filter(OutboxMessage.id.in_(
        [old_sent.id, new_sent.id, unsent.id, failed.id]))}
    assert kept == {new_sent.id, unsent.id, failed.id}
    assert maintenance.purge_sent_outbox(session, 3600) == 0  # a second run finds nothing


def _job(session, state="finished", finished_ago=timedelta(hours=2), parent=None):
    from collector.models import QueuedJob

    job = QueuedJob(queue_name="hva-handle.hva.retention", job_name="reboot", state=state,
                    finish_status="success" if state == "finished" else None,
                    finished_at=utcnow() - finished_ago if state == "finished" else None,
                    parent_id=parent.id if parent else None, retry_max=0, retry_count=0,
                    delivery_count=1)
    session.add(job)
    session.flush()
    return job


def test_finished_jobs_past_their_retention_are_deleted_children_first(session):
    from collector.models import QueuedJob

    old = _job(session)
    recent = _job(session, finished_ago=timedelta(minutes=5))
    pending, running = _job(session, "pending"), _job(session, "running")
    tree_root = _job(session)
    tree_leaf = _job(session, parent=_job(session, parent=tree_root))
    waiting_parent = _job(session)
    waiting_child = _job(session, "pending", parent=waiting_parent)
    mine = [old, recent, pending, running, tree_root, tree_leaf, waiting_parent, waiting_child]

    assert maintenance.purge_finished_jobs(session, 3600) >= 4
    kept = {j.id for j in session.query(QueuedJob).filter(QueuedJob.id.in_([j.id for j in mine]))}
    # A finished parent stays while a child it has is kept.
    assert kept == {recent.id, pending.id, running.id, waiting_parent.id, waiting_child.id}
    assert maintenance.purge_finished_jobs(session, 3600) == 0


def test_retention_settings_and_beat_entries():
    import celeryconfig
    from collector.config import load_settings

    settings = load_settings()
    assert settings.outbox_retention == 86400 and settings.job_retention == 30 * 86400
    tasks = {entry["task"] for entry in celeryconfig.beat_schedule.values()}
    assert {"maintenance.purge_sent_outbox", "maintenance.purge_finished_jobs"} <= tasks
