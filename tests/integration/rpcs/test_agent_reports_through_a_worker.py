"""An agent's ledger reports outlive transient failures: a job is not left ``running``.

The database refuses, a few times each, the update that marks a job running and the one
that finishes it, with a serialization failure (what a busy PostgreSQL answers). The
Collector retries in place, then answers ``TransientError``; the agent library retries the
report. The job runs once and ends ``finished/success`` with one delivery.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
import redis

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import QueuedJob
from tests.support.servers import start_agent, start_worker
from workers.agent.client import Collector

pytestmark = pytest.mark.integration

REDIS_DB = 11
FAILURES = 6  # the Collector's in-place retries take 3 a call: two calls answer TransientError


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"reports_{new_uuid()}")
    upgrade(db_url)
    broker = f"{redis_server.url}/{REDIS_DB}"
    worker = start_worker(db_url, broker, extra_args=("--concurrency", "4"))
    client = Collector(broker, timeout=30)
    yield {"db_url": db_url, "broker": broker, "worker": worker, "client": client}
    client.close()
    worker.stop()


def _refuse_job_updates(db_url: str, into_state: str, times: int) -> None:
    name = f"refuse_{into_state}"
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"""
            CREATE SEQUENCE {name}_seq;
            CREATE FUNCTION {name}() RETURNS trigger AS $$
            BEGIN
                IF NEW.state = '{into_state}' AND OLD.state <> NEW.state
                        AND nextval('{name}_seq') <= {times} THEN
                    RAISE EXCEPTION 'injected failure' USING ERRCODE = '40001';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER {name} BEFORE UPDATE ON queued_jobs
                FOR EACH ROW EXECUTE FUNCTION {name}();""")


def test_running_and_finish_reports_are_retried_until_the_ledger_takes_them(cluster):
    node = f"hva.r{new_uuid()}"
    _refuse_job_updates(cluster["db_url"], "running", FAILURES)
    _refuse_job_updates(cluster["db_url"], "finished", FAILURES)
    agent = start_agent(node, cluster["broker"], env=cluster["worker"].env)
    try:
        job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            with unit_of_work(cluster["db_url"]) as session:
                job = QueuedJob.by_cuuid(session, job_id)
            if job.state == "finished":
                break
            time.sleep(0.2)
        assert (job.state, job.finish_status, job.delivery_count) == ("finished", "success", 1)
        log = agent.log_text()
        assert "running('" in log and "finish_success('" in log and "TransientError" in log
        phases = [json.loads(e)["phase"] for e in redis.Redis.from_url(cluster["broker"]).lrange(
            f"agent-log:{node}", 0, -1) if json.loads(e)["job_id"] == job_id]
        assert phases == ["started", "finished"]  # run once
    finally:
        agent.stop()
