"""An event nobody would act on is not sent: no Collector handler takes it and no queue but
the dispatcher's is bound for it. It is stamped sent all the same; one an agent subscribes
to (a queue of its own bound to the events exchange) is sent, to it and to the dispatcher."""

from __future__ import annotations

import json

import pytest
import redis
from kombu import Queue
from sqlalchemy import select

import tasks.event_bus  # noqa: F401 - as in a Collector process: the subscriptions known
from collector.db import outbox, unit_of_work
from collector.models.outbox import OutboxMessage
from tasks import relay
from tests.support.servers import RedisServer
from workers.agent.client import EVENTS_EXCHANGE, EVENTS_QUEUE

pytestmark = pytest.mark.integration

NSA_QUEUE = "events.nsa-test"


@pytest.fixture()
def broker():
    """A Redis of its own (the exchange's bindings are this test's alone), the events queue
    bound as every Collector worker binds it."""
    with RedisServer() as server:
        url = f"{server.url}/0"
        app = relay.publisher(url)
        with app.connection_for_write() as conn:
            EVENTS_QUEUE(conn.default_channel).declare()
        yield app, redis.Redis.from_url(url)
        relay._publishers.pop(url, None)


def _bind_nsa(app, pattern: str) -> None:
    """An agent subscribing on its own queue, as nsa does for ``instance.scheduled``."""
    with app.connection_for_write() as conn:
        Queue(NSA_QUEUE, EVENTS_EXCHANGE, routing_key=pattern)(conn.default_channel).declare()


def _publish(db_url: str, app, event: str, sender: str = "collector") -> OutboxMessage:
    with unit_of_work(db_url) as session:
        task_id = outbox.events.publish(session, event, ["i-unheard0"], sender=sender)
    with unit_of_work(db_url) as session:
        row_id = session.scalar(select(OutboxMessage.id).where(OutboxMessage.task_id == task_id))
    assert relay.publish_rows(app, [row_id], db_url) == 1
    with unit_of_work(db_url) as session:
        row = session.get(OutboxMessage, row_id)
        session.expunge(row)
    return row


def _event_names(conn: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["argsrepr"] for raw in conn.lrange(queue, 0, -1)]


def test_an_event_only_the_dispatcher_would_see_and_ignore_is_stamped_sent_not_sent(
        db_url, broker):
    app, conn = broker
    row = _publish(db_url, app, "instance.scheduled")
    assert row.sent_at is not None and row.attempts == 1 and not row.awaiting_receipt
    assert conn.llen(EVENTS_QUEUE.name) == 0
    assert not conn.exists("ae.undeliver")


def test_an_event_an_agent_subscribes_to_reaches_it_and_the_dispatcher(db_url, broker):
    app, conn = broker
    _bind_nsa(app, "instance.scheduled.#")
    row = _publish(db_url, app, "instance.scheduled")
    assert row.sent_at is not None
    assert len(_event_names(conn, NSA_QUEUE)) == 1
    assert conn.llen(EVENTS_QUEUE.name) == 1
    # A subscription to another event does not make this one heard.
    _publish(db_url, app, "volume.scheduled")
    assert len(_event_names(conn, NSA_QUEUE)) == 1 and conn.llen(EVENTS_QUEUE.name) == 1


def test_an_event_a_collector_handler_takes_is_always_sent(db_url, broker):
    app, conn = broker
    row = _publish(db_url, app, "hva/instance_terminated", sender="hva.node1")
    assert row.awaiting_receipt  # the dispatcher's receipt is awaited: it must get it
    assert row.sent_at is not None
    assert len(_event_names(conn, EVENTS_QUEUE.name)) == 1
