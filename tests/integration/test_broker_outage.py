"""A job committed while the broker is down is delivered once it is back."""

from __future__ import annotations

import json

import pytest
import redis

from collector import messaging, relay
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage
from collector.relay import publisher
from tests.servers import RedisServer

pytestmark = pytest.mark.integration


def test_job_written_during_a_broker_outage_is_delivered_after_it(db_url):
    with RedisServer() as server:
        app = publisher(f"{server.url}/0")
        queue = f"sta-handle.sta.o{new_uuid()}"
        server.stop()
        with unit_of_work(db_url) as session:  # the Collector's own work goes on
            job_id = messaging.jobs.submit(session, queue, "create_volume", "vol-abcdefgh")
            row_id = session.query(OutboxMessage).filter_by(task_id=job_id).one().id
        assert relay.publish_rows(app, [row_id], db_url=db_url) == 0  # broker down: kept
        with unit_of_work(db_url) as session:
            row = session.get(OutboxMessage, row_id)
            assert row.sent_at is None and row.last_error
        server.start()
        assert relay.publish_rows(app, [row_id], db_url=db_url) == 1
        messages = redis.Redis.from_url(f"{server.url}/0").lrange(queue, 0, -1)
        assert [json.loads(m)["headers"]["id"] for m in messages] == [job_id]
