"""Periodic clean-ups: IP reservations that ran out, Windows passwords past their time."""

from datetime import timedelta

from sqlalchemy import select

from collector import sample_data
from collector.models import IpLease
from collector.services import maintenance
from collector.timeutil import utcnow


def _guard_exists(session, net, ipv4: int) -> bool:
    return session.scalars(select(IpLease).where(
        IpLease.network_id == net.id, IpLease.ipv4 == ipv4)).first() is not None


def test_expired_unused_reservation_is_released_and_others_stay(session):
    net = sample_data.network(session, "10.40.0.0/24")
    past, future = utcnow() - timedelta(minutes=5), utcnow() + timedelta(hours=1)
    expired = sample_data.ip_handle(session, net, "10.40.0.50", expires_at=past)
    in_use = sample_data.ip_handle(session, net, "10.40.0.51", expires_at=past,
                                   on=sample_data.vif(session, None, net))
    not_yet = sample_data.ip_handle(session, net, "10.40.0.52", expires_at=future)
    forever = sample_data.ip_handle(session, net, "10.40.0.53")
    released = expired.ip_lease

    assert maintenance.expire_ip_handles(session) == [expired.canonical_uuid]
    assert expired.deleted_at is not None and released.deleted_at is not None
    assert not _guard_exists(session, net, released.ipv4)  # the address can be leased again
    for kept in (in_use, not_yet, forever):
        assert kept.deleted_at is None and kept.ip_lease.deleted_at is None
        assert _guard_exists(session, net, kept.ip_lease.ipv4)
    assert maintenance.expire_ip_handles(session) == []  # a second run finds nothing


def test_windows_password_is_forgotten_once_its_time_has_come(session):
    host = sample_data.host_node(session)
    due = sample_data.instance(session, host, encrypted_password="c2VjcmV0",
                               password_will_be_deleted_at=utcnow() - timedelta(seconds=1))
    later = sample_data.instance(session, host, encrypted_password="bGF0ZXI=",
                                 password_will_be_deleted_at=utcnow() + timedelta(days=1))
    kept = sample_data.instance(session, host, encrypted_password="a2VwdA==")

    assert maintenance.delete_expired_windows_passwords(session) == [due.canonical_uuid]
    assert (due.encrypted_password, due.password_will_be_deleted_at) == (None, None)
    assert later.encrypted_password == "bGF0ZXI=" and kept.encrypted_password == "a2VwdA=="
    assert maintenance.delete_expired_windows_passwords(session) == []
