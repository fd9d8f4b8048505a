"""A job committed while the broker is down is delivered once it is back."""

from __future__ import annotations

import json
import time

import pytest
import redis

from collector.db import outbox, unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from tasks import relay
from tasks.relay import publisher
from tests.support.servers import RedisServer, start_agent, start_worker
from workers.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.integration


def test_job_written_during_a_broker_outage_is_delivered_after_it(db_url):
    with RedisServer() as server:
        app = publisher(f"{server.url}/0")
        queue = f"sta-handle.sta.o{new_uuid()}"
        server.stop()
        with unit_of_work(db_url) as session:  # the Collector's own work goes on
            job_id = outbox.jobs.submit(session, queue, "create_volume", "vol-abcdefgh")
            row_id = session.query(OutboxMessage).filter_by(task_id=job_id).one().id
        assert relay.publish_rows(app, [row_id], db_url=db_url) == 0  # broker down: kept
        with unit_of_work(db_url) as session:
            row = session.get(OutboxMessage, row_id)
            assert row.sent_at is None and row.last_error
        server.start()
        assert relay.publish_rows(app, [row_id], db_url=db_url) == 1
        messages = redis.Redis.from_url(f"{server.url}/0").lrange(queue, 0, -1)
        assert [json.loads(m)["headers"]["id"] for m in messages] == [job_id]


def test_job_for_an_absent_agent_survives_a_broker_restart_and_runs_once(db_url, tmp_path):
    """The shipped Redis configuration (append-only file) keeps a node's waiting jobs."""
    node = f"hva.r{new_uuid()}"
    broker = EmbeddedRedis(tmp_path).start()
    try:
        with unit_of_work(db_url) as session:
            job_id = outbox.jobs.submit(session, f"hva-handle.{node}", "reboot", "i-abc12345")
            row_id = session.query(OutboxMessage).filter_by(task_id=job_id).one().id
        assert relay.publish_rows(publisher(broker.url), [row_id], db_url=db_url) == 1
        broker.stop()  # nobody consumed the node's queue yet
        broker = EmbeddedRedis(tmp_path, port=broker.port).start()
        waiting = redis.Redis.from_url(broker.url).lrange(f"hva-handle.{node}", 0, -1)
        assert [json.loads(m)["headers"]["id"] for m in waiting] == [job_id]

        worker = start_worker(db_url, broker.url)
        agent = start_agent(node, broker.url, env=worker.env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with unit_of_work(db_url) as session:
                    job = QueuedJob.by_cuuid(session, job_id)
                if job.state == "finished":
                    break
                time.sleep(0.2)
            assert (job.state, job.finish_status, job.delivery_count) == (
                "finished", "success", 1)
        finally:
            agent.stop()
            worker.stop()
    finally:
        broker.stop()
