"""The periodic clean-ups as beat sends them: by name, to the maintenance queue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collector.db import unit_of_work
from collector.models import Instance, IpHandle
from collector.timeutil import utcnow
from workers.demo.world import make

pytestmark = pytest.mark.integration


def _run(client, task: str):
    return client.app.send_task(task, queue="maintenance").get(timeout=30)


def test_expired_reservation_and_windows_password_are_cleaned_by_the_worker(
        collector_client, worker):
    with unit_of_work(worker.db_url) as session:
        net = make.network(session, "10.41.0.0/24")
        handle = make.ip_handle(session, net, "10.41.0.50",
                                       expires_at=utcnow() - timedelta(minutes=1))
        inst = make.instance(session, make.host_node(session),
                                    encrypted_password="c2VjcmV0",
                                    password_will_be_deleted_at=utcnow() - timedelta(seconds=1))
        handle_pk, handle_id, inst_pk = handle.id, handle.canonical_uuid, inst.id

    assert handle_id in _run(collector_client, "maintenance.expire_ip_handles")
    assert inst.canonical_uuid in _run(collector_client,
                                       "maintenance.delete_expired_windows_passwords")
    with unit_of_work(worker.db_url) as session:
        assert session.get(IpHandle, handle_pk).deleted_at is not None
        assert session.get(Instance, inst_pk).encrypted_password is None
    # Beat may send a run twice: the second finds nothing left to do.
    assert handle_id not in _run(collector_client, "maintenance.expire_ip_handles")


def test_retention_tasks_run_by_name_on_the_worker_and_twice_is_harmless(collector_client):
    for task in ("maintenance.purge_sent_outbox", "maintenance.purge_finished_jobs"):
        assert isinstance(_run(collector_client, task), int)
        assert _run(collector_client, task) == 0  # the defaults keep a day / 30 days
