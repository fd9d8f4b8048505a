"""The hand-over from a queue to a consumer cannot lose a message: a process killed after
Redis gave it a message, before it recorded it as unacknowledged, leaves the message in
its in-flight list, from which it goes back to its queue once the process has been silent
for the visibility timeout (at once when a channel closes cleanly)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import time

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

pytestmark = pytest.mark.integration

REDIS_DB = 12
TRANSPORT = "workers.agent.transport:RedisTransport"
OPTIONS = {"unacked_key": "handover.unacked", "unacked_index_key": "handover.unacked_index",
           "unacked_mutex_key": "handover.unacked_mutex", "visibility_timeout": 3}


@pytest.fixture()
def broker(redis_server):
    url = f"{redis_server.url}/{REDIS_DB}"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()


def _connection(url: str) -> Connection:
    return Connection(url, transport=TRANSPORT, transport_options=OPTIONS)


def _publish(url: str, queue: str, bodies: list[str], priority: int | None = None) -> None:
    with _connection(url) as conn:
        producer = Producer(conn.channel(), serializer="json")
        q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        for body in bodies:
            producer.publish(body, exchange=q.exchange, routing_key=queue, declare=[q],
                             priority=priority)


def _consume(url: str, queues: list[str], count: int, timeout: float = 10) -> list[str]:
    got: list[str] = []
    with _connection(url) as conn:
        def on_message(body, message):
            got.append(body)
            message.ack()
        with Consumer(conn, [Queue(q, Exchange(q, type="direct"), routing_key=q)
                             for q in queues], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + timeout
            while len(got) < count and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    return got


def _body(raw: bytes) -> str:
    return json.loads(base64.b64decode(json.loads(raw)["body"]))


def _inflight_lists(url: str) -> dict[str, list[bytes]]:
    conn = redis.Redis.from_url(url)
    return {key.decode(): conn.lrange(key, 0, -1)
            for key in conn.keys("handover.unacked.inflight.*")}


def test_messages_of_several_queues_are_delivered_and_leave_nothing_in_flight(broker):
    _publish(broker, "ho.a", ["a1", "a2"])
    _publish(broker, "ho.b", ["b1"])
    assert sorted(_consume(broker, ["ho.a", "ho.b"], 3)) == ["a1", "a2", "b1"]
    assert all(not items for items in _inflight_lists(broker).values())
    conn = redis.Redis.from_url(broker)
    assert conn.hlen("handover.unacked") == 0  # acked: gone from the unacked hash too


def test_a_message_sent_with_a_priority_is_taken_too(broker):
    """kombu keeps prioritised messages in lists of their own beside the queue's."""
    _publish(broker, "ho.pri", ["high"], priority=9)
    _publish(broker, "ho.pri", ["plain"])
    assert redis.Redis.from_url(broker).llen("ho.pri") == 1  # the other is beside it
    assert sorted(_consume(broker, ["ho.pri"], 2)) == ["high", "plain"]
    assert all(not items for items in _inflight_lists(broker).values())


def test_a_wait_on_one_queue_does_not_keep_another_waiting_long(broker):
    """A consumer of two queues, both empty, then a message on each: both come promptly."""
    import threading

    got: list[str] = []
    consumer = threading.Thread(target=lambda: got.extend(
        _consume(broker, ["ho.c", "ho.d"], 2)))
    consumer.start()
    time.sleep(1.0)  # the consumer is waiting now
    started = time.monotonic()
    _publish(broker, "ho.d", ["d1"])
    _publish(broker, "ho.c", ["c1"])
    consumer.join(10)
    assert sorted(got) == ["c1", "d1"]
    assert time.monotonic() - started < 1.0


_KILLED_IN_HANDOVER = textwrap.dedent("""
    import os, sys, time
    from kombu import Connection, Consumer, Exchange, Queue
    from workers.agent import transport as redis_transport

    def die(self, message, delivery_tag):  # killed after the move, before the record
        os._exit(9)

    redis_transport._QoS.append = die
    url, queue = sys.argv[1], sys.argv[2]
    options = {options!r}
    with Connection(url, transport="{transport}", transport_options=options) as conn:
        q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        with Consumer(conn, [q], callbacks=[lambda body, message: None], accept=["json"]):
            while True:
                conn.drain_events(timeout=5)
""").format(options=OPTIONS, transport=TRANSPORT)


def test_a_consumer_killed_between_taking_and_recording_loses_nothing(broker):
    _publish(broker, "ho.kill", ["precious"])
    done = subprocess.run([sys.executable, "-c", _KILLED_IN_HANDOVER, broker, "ho.kill"],
                          timeout=60, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    conn = redis.Redis.from_url(broker)
    assert conn.llen("ho.kill") == 0 and conn.hlen("handover.unacked") == 0
    held = [items for items in _inflight_lists(broker).values() if items]
    assert len(held) == 1 and _body(held[0][0]) == "precious"  # where kombu's BRPOP lost it

    # Another consumer gets it once the dead one has been silent for the visibility timeout.
    time.sleep(OPTIONS["visibility_timeout"] + 0.5)
    with _connection(broker) as other:
        channel = other.default_channel
        assert channel.give_back_stale_inflight(time.time() - OPTIONS["visibility_timeout"]) == 1
    assert _consume(broker, ["ho.kill"], 1) == ["precious"]
    assert all(not items for items in _inflight_lists(broker).values())


def test_a_live_consumer_keeps_what_it_holds(broker):
    """The restorer gives back only what silent channels hold, never a live one's."""
    _publish(broker, "ho.live", ["x"])
    with _connection(broker) as conn:
        channel = conn.default_channel
        channel._can_move()
        inflight = channel._inflight("ho.live")
        client = redis.Redis.from_url(broker)
        client.zadd(channel.inflight_index_key, {inflight: time.time()})
        client.lmove("ho.live", inflight, "RIGHT", "LEFT")
        assert channel.give_back_stale_inflight(time.time() - 60) == 0
        assert client.llen(inflight) == 1
        channel.close()  # a clean close gives it back at once
        assert client.llen(inflight) == 0 and client.llen("ho.live") == 1


def test_a_running_worker_gives_back_what_a_dead_one_held_in_flight(worker, redis_server):
    """A one-shot call left in a dead channel's in-flight list is applied by a live worker
    (its periodic restore), not left there."""
    from sqlalchemy import select

    from collector.db import unit_of_work
    from collector.ids import new_uuid
    from collector.models import NodeState
    from workers.agent.client import Collector

    node = f"hva.ho{new_uuid()}"
    spare = f"{redis_server.url}/15"  # no worker here: the message waits
    redis.Redis.from_url(spare).flushdb()
    with Collector(spare) as client:
        client.oneshot("node-collector").notify(node, "boot")
    raw = redis.Redis.from_url(spare).rpop("node-collector")
    assert raw is not None

    live = redis.Redis.from_url(worker.broker_url)
    dead = "collector.unacked.inflight.0123456789abcdef|node-collector"
    live.zadd("collector.unacked.inflight", {dead: time.time() - 3600})  # silent for an hour
    live.lpush(dead, raw)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with unit_of_work(worker.db_url) as session:
            if session.scalar(select(NodeState.node_id).where(NodeState.node_id == node)):
                break
        time.sleep(0.3)
    else:
        pytest.fail("the message held by the dead channel was never applied")
    assert live.llen(dead) == 0 and live.zscore("collector.unacked.inflight", dead) is None
