"""A job for a node whose queue this process never sent to costs one Redis command, in the
relay's one pipeline: the queue is not declared first (no exchange binding, no length read),
and the agent consuming the queue by its name receives it all the same."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection, Exchange, Queue
from sqlalchemy import select

from collector.db import outbox, unit_of_work
from collector.models.outbox import OutboxMessage
from tasks import relay
from tests.support.servers import RedisServer

pytestmark = pytest.mark.integration

NODES = [f"hva-new{n}" for n in range(12)]


@pytest.fixture()
def broker():
    with RedisServer() as server:
        url = f"{server.url}/0"
        yield relay.publisher(url), redis.Redis.from_url(url), url
        relay._publishers.pop(url, None)


def _command_calls(conn: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in conn.info("commandstats").items()}


def test_jobs_to_node_queues_never_sent_to_are_one_push_each_and_reach_the_agents(
        db_url, broker):
    app, conn, url = broker
    with unit_of_work(db_url) as session:
        job_ids = [outbox.jobs.submit(session, f"hva-handle.{node}", "run_local_store",
                                      f"i-new{n:04d}", resource_id=f"i-new{n:04d}")
                   for n, node in enumerate(NODES)]
    with unit_of_work(db_url) as session:
        row_ids = list(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.task_id.in_(job_ids))))
    before = _command_calls(conn)
    assert relay.publish_rows(app, row_ids, db_url) == len(NODES)
    after = _command_calls(conn)

    spent = {name: calls - before.get(name, 0) for name, calls in after.items()
             if calls != before.get(name, 0)}
    spent.pop("info", None)
    assert spent.get("lpush") == len(NODES)
    assert not {"sadd", "llen", "smembers"} & spent.keys(), spent
    assert not conn.keys("_kombu.binding.hva-handle.*")

    # Each agent consumes its queue as Celery declares it (an exchange of the queue's name)
    # and receives its own job, and only that one.
    with Connection(url) as agent:
        for node, job_id in zip(NODES, job_ids, strict=True):
            name = f"hva-handle.{node}"
            queue = agent.SimpleQueue(Queue(name, Exchange(name), routing_key=name))
            message = queue.get(timeout=5)
            assert message.headers["id"] == job_id
            assert message.headers["task"] == "hva-handle.run_local_store"
            message.ack()
            assert conn.llen(name) == 0
            queue.close()
