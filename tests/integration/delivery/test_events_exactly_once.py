"""Events end to end, exactly once in effect: a repeated event is handled once, and an
event or handler message Redis lost after it was sent is sent again and handled once.

Real PostgreSQL, real Redis, real workers: the dispatcher (``events``), the handlers
(``events.alarm-collector``, ``events.event-hook``) and maintenance each in their own
process, so one can be stopped while a message waits for it; a beat runs the outbox sweep
and the re-send pass (COLLECTOR_EVENT_RESEND_AFTER=2). The effect counted is not idempotent
by itself: each run of ``events.alarm-collector.on_instance_started`` submits one
``update_alarms`` job to the host's resource alarm registry (one ledger row).
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from sqlalchemy import select

from collector.db import outbox, unit_of_work
from collector.models import DISPATCH, EventReceipt, OutboxMessage, QueuedJob
from tests.support.checks import wait_for
from tests.support.servers import start_beat, start_worker
from workers.agent.client import Collector
from workers.demo.world import make

pytestmark = pytest.mark.integration

REDIS_DB = 1
HANDLER = "events.alarm-collector.on_instance_started"
HANDLER_QUEUES = ("events.alarm-collector", "events.event-hook")
RESEND_AFTER = 2
ENV = {"COLLECTOR_EVENT_RESEND_AFTER": str(RESEND_AFTER)}


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server, tmp_path_factory):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database("events_exactly_once")
    upgrade(db_url)
    broker = f"{redis_server.url}/{REDIS_DB}"
    conn = redis.Redis.from_url(broker)
    conn.flushdb()
    workers = {
        "dispatcher": start_worker(db_url, broker, "dispatcher", queues=("events",), env=ENV),
        "handlers": start_worker(db_url, broker, "handlers", queues=HANDLER_QUEUES, env=ENV),
        "maintenance": start_worker(db_url, broker, "maintenance", queues=("maintenance",),
                                    env=ENV),
    }
    beat = start_beat(db_url, broker, str(tmp_path_factory.mktemp("beat")),
                      env={**workers["maintenance"].env, **ENV})
    client = Collector(broker, timeout=30)
    state = {"db_url": db_url, "broker": broker, "redis": conn, "workers": workers,
             "client": client}
    yield state
    client.close()
    beat.stop()
    for worker in state["workers"].values():
        worker.stop()


def _restart(cluster, name: str) -> None:
    old = cluster["workers"][name]
    old.stop()
    queues = {"dispatcher": ("events",), "handlers": HANDLER_QUEUES}[name]
    cluster["workers"][name] = start_worker(cluster["db_url"], cluster["broker"], name,
                                            queues=queues, env=ENV)


def _started_instance(db_url: str) -> dict:
    """A running instance with one enabled resource alarm: its ``hva/instance_started``
    submits one registry job per handler run."""
    with unit_of_work(db_url) as session:
        inst = make.running_instance(session)
        make.alarm(session, inst, "cpu.usage")
        return {"id": inst.canonical_uuid, "node": inst.host_node.node_id}


def _registry_jobs(db_url: str, inst: dict) -> int:
    with unit_of_work(db_url) as session:
        return len(session.scalars(select(QueuedJob).where(
            QueuedJob.queue_name == f"resource-alarm-registry.{inst['node']}",
            QueuedJob.resource_id == inst["id"])).all())


def _receipts(db_url: str, event_id: str) -> list[str]:
    with unit_of_work(db_url) as session:
        return sorted(session.scalars(select(EventReceipt.handler).where(
            EventReceipt.event_id == event_id)))


def _handled_once(cluster, inst: dict, event_id: str, timeout: float) -> None:
    """The handler ran (its job submitted) within ``timeout``; then, after every re-send
    deadline has passed a few times more, still exactly once."""
    db_url = cluster["db_url"]
    wait_for(lambda: _registry_jobs(db_url, inst), "the handler's registry job", timeout,
             every=0.2)
    wait_for(lambda: _receipts(db_url, event_id) == sorted([DISPATCH, HANDLER]) or None,
             "the dispatch and handler receipts", 10, every=0.2)
    time.sleep(3 * RESEND_AFTER)  # repeats and re-sends, if any, have come by now
    assert _registry_jobs(db_url, inst) == 1
    assert _receipts(db_url, event_id) == sorted([DISPATCH, HANDLER])


def test_the_same_event_published_twice_is_handled_once(cluster):
    inst = _started_instance(cluster["db_url"])
    event_id = f"ev-{uuid.uuid4()}"
    events = cluster["client"].events
    for _ in range(2):
        assert events.publish("hva/instance_started", [inst["id"]], sender=inst["node"],
                              event_id=event_id) == event_id
    _handled_once(cluster, inst, event_id, timeout=20)
    # The dispatcher's result confirms the event to its publisher, which stops re-publishing.
    assert events.wait_confirmed(10) and event_id not in events.unconfirmed()


def _handler_rows(db_url: str, event_id: str) -> list[OutboxMessage]:
    with unit_of_work(db_url) as session:
        return [row for row in session.scalars(select(OutboxMessage).where(
            OutboxMessage.name == HANDLER)) if row.payload["kwargs"].get("event_id") == event_id]


def test_a_handler_message_lost_in_redis_is_sent_again_and_handled_once(cluster):
    db_url, conn = cluster["db_url"], cluster["redis"]
    inst = _started_instance(db_url)
    cluster["workers"]["handlers"].stop()  # the handler message waits in its queue
    try:
        event_id = cluster["client"].events.publish("hva/instance_started", [inst["id"]],
                                                    sender=inst["node"])
        [row] = wait_for(lambda: [r for r in _handler_rows(db_url, event_id) if r.sent_at],
                         "the handler message sent", 20, every=0.1)
        wait_for(lambda: conn.llen("events.alarm-collector"), "the message in Redis", 10,
                 every=0.1)
        conn.delete("events.alarm-collector")  # lost: as after a crash of Redis
        assert _registry_jobs(db_url, inst) == 0
    finally:
        _restart(cluster, "handlers")
    _handled_once(cluster, inst, event_id, timeout=10 * RESEND_AFTER)
    assert row.task_id == _handler_rows(db_url, event_id)[0].task_id  # the same message


def test_an_event_lost_in_redis_is_sent_again_from_the_outbox_and_handled_once(cluster):
    db_url, conn = cluster["db_url"], cluster["redis"]
    inst = _started_instance(db_url)
    cluster["workers"]["dispatcher"].stop()  # the event waits in the events queue
    try:
        with unit_of_work(db_url) as session:  # the Collector publishes it (outbox)
            event_id = outbox.events.publish(session, "hva/instance_started", [inst["id"]],
                                             sender=inst["node"])

        def sent() -> bool:
            with unit_of_work(db_url) as session:
                return session.scalars(select(OutboxMessage.sent_at).where(
                    OutboxMessage.task_id == event_id)).one() is not None

        wait_for(sent, "the event sent by the outbox sweep", 20, every=0.1)
        wait_for(lambda: conn.llen("events"), "the event in Redis", 10, every=0.1)
        conn.delete("events")  # lost
        assert _receipts(db_url, event_id) == []
    finally:
        _restart(cluster, "dispatcher")
    _handled_once(cluster, inst, event_id, timeout=10 * RESEND_AFTER)


def test_an_agent_event_lost_in_redis_is_published_again_by_the_library(cluster, monkeypatch):
    db_url, conn = cluster["db_url"], cluster["redis"]
    inst = _started_instance(db_url)
    monkeypatch.setenv("COLLECTOR_EVENT_RESEND_AFTER", str(RESEND_AFTER))
    cluster["workers"]["dispatcher"].stop()
    with Collector(cluster["broker"], timeout=30) as agent:
        try:
            event_id = agent.events.publish("hva/instance_started", [inst["id"]],
                                            sender=inst["node"])
            wait_for(lambda: conn.llen("events"), "the event in Redis", 10, every=0.05)
            conn.delete("events")  # lost
        finally:
            _restart(cluster, "dispatcher")
        # Not confirmed: the library publishes it again under its id, until dispatched.
        assert agent.events.wait_confirmed(10 * RESEND_AFTER)
        _handled_once(cluster, inst, event_id, timeout=10)


def test_an_event_no_collector_handler_takes_is_sent_once_and_dispatched_without_a_write(
        cluster):
    """``instance.scheduled`` has no Collector handler (agents may bind their own queues to
    the events exchange): nothing waits for its receipt, so it is sent once (stamped sent
    without a publish when no agent binds a queue for it: test_unheard_events), its dispatch
    writes no receipt (its message is answered at receipt, no task run), and the re-send
    pass leaves it alone."""
    import tasks.event_bus  # noqa: F401 - as in a Collector process: the subscriptions known

    db_url = cluster["db_url"]
    with unit_of_work(db_url) as session:
        event_id = outbox.events.publish(session, "instance.scheduled", ["i-noone000"])
        handled = outbox.events.publish(session, "hva/instance_started", ["i-noone000"],
                                        sender="hva.nowhere")
        waiting = dict(session.execute(select(OutboxMessage.task_id,
                                              OutboxMessage.awaiting_receipt).where(
            OutboxMessage.task_id.in_([event_id, handled]))).all())
    assert waiting == {event_id: False, handled: True}  # as written

    def row(task_id: str) -> OutboxMessage:
        with unit_of_work(db_url) as session:
            return session.scalars(select(OutboxMessage).where(
                OutboxMessage.task_id == task_id)).one()

    first = wait_for(lambda: row(event_id).sent_at, "the event sent", 20, every=0.1)
    # An agent's copy of such an event is confirmed by the dispatcher's answer all the same.
    events = cluster["client"].events
    copy = events.publish("instance.scheduled", ["i-noone000"], sender="hva.nowhere")
    assert events.wait_confirmed(10) and copy not in events.unconfirmed()
    # Answered at receipt: acknowledged and confirmed with no task run for it.
    assert f"[{copy}] received" not in cluster["workers"]["dispatcher"].log_text()
    wait_for(lambda: DISPATCH in _receipts(db_url, handled) or None,
             "the handled event's dispatch receipt", 20, every=0.2)
    time.sleep(3 * RESEND_AFTER)  # a re-send, if any, has come by now
    assert row(event_id).sent_at == first and row(event_id).attempts == 1
    assert _receipts(db_url, event_id) == [] and _receipts(db_url, copy) == []
