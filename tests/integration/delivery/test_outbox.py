"""What a transaction writes to the outbox is delivered once, even after a crash."""

from __future__ import annotations

import json

import pytest
import redis

from collector.db import outbox, unit_of_work
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
        job_id = outbox.jobs.submit(session, queue, "run_local_store", "i-abc12345")
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
        job_id = outbox.jobs.submit(session, queue, "run_local_store", "i-abc12345")
        raise RuntimeError("the call failed after submitting")
    relay.sweep(app, older_than=0, db_url=db_url)
    assert _queued(conn, queue) == []
    with unit_of_work(db_url) as session:
        assert session.query(OutboxMessage).filter_by(task_id=job_id).count() == 0


def test_after_commit_relay_and_sweep_never_both_publish(db_url, broker):
    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        outbox.jobs.submit(session, queue, "run_local_store", "i-abc12345")
        row_id = session.query(OutboxMessage).order_by(OutboxMessage.id.desc()).first().id
    assert relay.publish_rows(app, [row_id], db_url=db_url) == 1
    assert relay.publish_rows(app, [row_id], db_url=db_url) == 0
    relay.sweep(app, older_than=0, db_url=db_url)
    assert len(_queued(conn, queue)) == 1


def _poison(session, queue: str) -> OutboxMessage:
    """A row no publish can succeed with (its payload lacks the task's arguments)."""
    row = OutboxMessage(kind="task", name="hva-handle.broken", queue=queue, payload={},
                        task_id=f"msg-{new_uuid()}")
    session.add(row)
    session.flush()
    return row


def test_a_row_that_always_fails_does_not_hold_back_the_others(db_url, broker):
    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        poison_id = _poison(session, queue).id  # the oldest unsent row
        job_id = outbox.jobs.submit(session, queue, "run_local_store", "i-abc12345")
    relay.sweep(app, older_than=0, db_url=db_url)
    assert [m["headers"]["id"] for m in _queued(conn, queue)] == [job_id]
    with unit_of_work(db_url) as session:
        poison = session.get(OutboxMessage, poison_id)
        assert poison.sent_at is None and poison.attempts == 1 and "KeyError" in poison.last_error
        session.delete(poison)


def test_a_row_failing_every_attempt_is_dead_lettered_then_replayed(db_url, broker):
    from collector.models import DeadLetter
    from collector.services import dead_letters

    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        poison_id = _poison(session, queue).id
    for _ in range(7):  # more sweeps than attempts: the row stops being tried
        relay.sweep(app, older_than=0, db_url=db_url)
    with unit_of_work(db_url) as session:
        row = session.get(OutboxMessage, poison_id)
        assert (row.attempts, row.sent_at) == (5, None) and row.failed_at is not None
        [letter] = session.query(DeadLetter).filter_by(outbox_id=poison_id).all()
        assert (letter.source, letter.task_name, letter.attempts) == (
            "outbox", "hva-handle.broken", 5)
        row.payload = {"args": ["i-abc12345"], "kwargs": {}}  # what an operator would repair
        dead_letters.replay(session, letter.id)
    assert relay.sweep(app, older_than=0, db_url=db_url) >= 1
    assert [m["headers"]["task"] for m in _queued(conn, queue)] == ["hva-handle.broken"]
    with unit_of_work(db_url) as session:
        assert session.get(OutboxMessage, poison_id).sent_at is not None


def test_a_broker_outage_is_not_counted_against_the_rows(db_url):
    from workers.embedded_redis import free_port

    app = publisher(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        ids = [outbox.jobs.submit(session, queue, "reboot", str(k)) for k in range(3)]
    for _ in range(2):  # each costs the publisher's retries (about 1.5 s)
        assert relay.sweep(app, older_than=0, db_url=db_url) == 0
    with unit_of_work(db_url) as session:
        rows = session.query(OutboxMessage).filter(OutboxMessage.task_id.in_(ids)).all()
        assert [(r.attempts, r.failed_at, r.claimed_until) for r in rows] == [(0, None, None)] * 3
        assert any("OperationalError" in (r.last_error or "") for r in rows)


def test_two_sweeps_at_once_publish_each_row_once(db_url, broker):
    import threading

    app, conn = broker
    queue = f"hva-handle.hva.t{new_uuid()}"
    with unit_of_work(db_url) as session:
        for k in range(40):
            outbox.jobs.submit(session, queue, "reboot", str(k))
    sweeps = [threading.Thread(target=relay.sweep, args=(app,),
                               kwargs={"older_than": 0, "db_url": db_url}) for _ in range(3)]
    for t in sweeps:
        t.start()
    for t in sweeps:
        t.join(60)
    ids = [m["headers"]["id"] for m in _queued(conn, queue)]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_the_relay_holds_no_write_lock_while_the_broker_keeps_it_waiting(tmp_path):
    """SQLite has one writer: a relay publishing inside its transaction would stall it."""
    import threading
    import time

    from collector.db.migrate import upgrade
    from workers.embedded_redis import free_port

    db_url = f"sqlite:///{tmp_path / 'relay.sqlite3'}"
    upgrade(db_url)
    app = publisher(f"redis://127.0.0.1:{free_port()}/0")  # each publish fails after ~1.5 s
    with unit_of_work(db_url) as session:
        outbox.jobs.submit(session, f"hva-handle.hva.t{new_uuid()}", "reboot")
    relaying = threading.Thread(target=relay.sweep, args=(app,),
                                kwargs={"older_than": 0, "db_url": db_url})
    relaying.start()
    time.sleep(0.4)  # the relay is now waiting for the broker
    started = time.monotonic()
    with unit_of_work(db_url) as session:  # another writer
        outbox.jobs.submit(session, f"hva-handle.hva.t{new_uuid()}", "reboot")
    waited = time.monotonic() - started
    relaying.join(30)
    assert waited < 0.5, f"a writer waited {waited:.2f}s for the relay"
