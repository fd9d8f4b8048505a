"""What a transaction writes to the outbox is delivered once, even after a crash."""

from __future__ import annotations

import json

import pytest
import redis

from collector import messaging
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models.outbox import OutboxMessage
from tasks import relay
from tasks.relay import publisher

pytestmark = pytest.mark.integration


@pytest.fixture()
def broker(redis_server):
    url = f"{redis_server.url}/7"
    yield publisher(url), redis.Redis.from_url(url)


def _queued(conn: redis.Redis, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in conn.lrange(queue, 0, -1)]


def test_job_committed_but_never_relayed_is_delivered_once_by_the_sweep(db_url, broker):
    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    # Commit without relaying: exactly the state a crash right after COMMIT leaves behind.
    with unit_of_work(db_url) as session:
        job_id = messaging.jobs.submit(session, queue, "run_local_store", "i-abc12345")
    assert _queued(conn, queue) == []

    assert relay.sweep(app, older_than=0, db_url=db_url) >= 1
    assert relay.sweep(app, older_than=0, db_url=db_url) == 0  # a second sweep sends nothing

    messages = _queued(conn, queue)
    assert len(messages) == 1
    headers = messages[0]["headers"]
    assert headers["task"] == "hva-handle.run_local_store"
    assert headers["id"] == job_id
    assert messages[0]["content-type"] == "application/json"
    with unit_of_work(db_url) as session:
        row = session.query(OutboxMessage).filter_by(task_id=job_id).one()
        assert row.sent_at is not None and row.attempts == 1


def test_rolled_back_transaction_sends_nothing(db_url, broker):
    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with pytest.raises(RuntimeError), unit_of_work(db_url) as session:
        job_id = messaging.jobs.submit(session, queue, "run_local_store", "i-abc12345")
        raise RuntimeError("the call failed after submitting")
    relay.sweep(app, older_than=0, db_url=db_url)
    assert _queued(conn, queue) == []
    with unit_of_work(db_url) as session:
        assert session.query(OutboxMessage).filter_by(task_id=job_id).count() == 0


def test_after_commit_relay_and_sweep_never_both_publish(db_url, broker):
    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        messaging.jobs.submit(session, queue, "run_local_store", "i-abc12345")
        row_id = session.query(OutboxMessage).order_by(OutboxMessage.id.desc()).first().id
    assert relay.publish_rows(app, [row_id], db_url=db_url) == 1
    assert relay.publish_rows(app, [row_id], db_url=db_url) == 0
    relay.sweep(app, older_than=0, db_url=db_url)
    assert len(_queued(conn, queue)) == 1
