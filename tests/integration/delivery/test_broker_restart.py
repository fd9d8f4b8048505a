"""The worker survives Redis restarts under load, and an unrecoverable exit is non-zero.

Callers keep ``push_job`` calls going while Redis is stopped and started again (same port,
nothing kept). Each time, the worker must still run and answer again within seconds; at
the end every job a caller was told about is in the ledger and its message was sent (the
outbox sweep resends what a relay could not publish during the outage).

Loopback only. ``COLLECTOR_FAULT_ITERATIONS`` sets the number of restarts (default 2; the
full run in the reference is 10).
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from tests.support.servers import RedisServer, start_beat, start_worker
from workers.agent.client import Collector, RpcError

pytestmark = pytest.mark.integration

RESTARTS = int(os.environ.get("COLLECTOR_FAULT_ITERATIONS", "2"))
RECOVERY = 30.0  # seconds within which calls must be answered again after a restart


@pytest.fixture(scope="module")
def cluster(postgres_server, tmp_path_factory):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"restart_{new_uuid()}")
    upgrade(db_url)
    with RedisServer() as broker:
        worker = start_worker(db_url, f"{broker.url}/0", extra_args=("--concurrency", "4"))
        beat = start_beat(db_url, f"{broker.url}/0", str(tmp_path_factory.mktemp("beat")),
                          env=worker.env)
        yield {"db_url": db_url, "redis": broker, "broker": f"{broker.url}/0",
               "worker": worker}
        beat.stop()
        worker.stop()


def _call(client: Collector, token: str) -> str:
    return client.call("jobqueue-proxy", "push_job", "hva-handle.hva.restart", "reboot", [],
                       token, timeout=3)


def test_worker_survives_redis_restarts_under_load_and_loses_no_job(cluster):
    worker, prefix = cluster["worker"], f"r{new_uuid()}"
    answered: list[str] = []
    stop = threading.Event()

    def load(k: int) -> None:
        with Collector(cluster["broker"], timeout=3) as client:
            n = 0
            while not stop.is_set():
                token = f"{prefix}-{k}-{n}"
                n += 1
                try:
                    _call(client, token)
                    answered.append(token)
                except (RpcError, Exception):  # noqa: BLE001 - the broker is down on purpose
                    time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    recoveries = []
    try:
        for i in range(RESTARTS):
            time.sleep(1.5)
            cluster["redis"].restart()
            restarted = time.monotonic()
            with Collector(cluster["broker"], timeout=2) as probe:
                while True:
                    assert worker.process.poll() is None, \
                        f"the worker exited ({worker.process.returncode}) after restart {i + 1}"
                    try:
                        _call(probe, f"{prefix}-probe-{i}")
                        break
                    except Exception:  # noqa: BLE001 - not back yet
                        assert time.monotonic() - restarted < RECOVERY, \
                            f"no answer {RECOVERY}s after restart {i + 1}"
                        time.sleep(0.2)
            recoveries.append(time.monotonic() - restarted)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    print(f"answers resumed {', '.join(f'{r:.1f}' for r in recoveries)} s after the restarts")
    assert worker.process.poll() is None
    assert "Unrecoverable error" not in worker.log_text()
    assert len(answered) > 20 * RESTARTS

    deadline = time.monotonic() + 30
    while True:
        with unit_of_work(cluster["db_url"]) as session:
            jobs = dict(session.execute(select(QueuedJob.resource_id, QueuedJob.task_id).where(
                QueuedJob.resource_id.in_(answered))).all())
            unsent = session.scalar(select(OutboxMessage.id).where(
                OutboxMessage.task_id.in_(list(jobs.values())),
                OutboxMessage.sent_at.is_(None)).limit(1))
        if unsent is None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(jobs) == set(answered)  # every answered call is in the ledger
    assert unsent is None  # and its job was sent (the sweep resent what the outage kept)


UNRECOVERABLE = """
import sys
from celery import bootsteps
from tasks.app import app

class Boom(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer):
        raise RuntimeError("injected unrecoverable failure")

app.steps["consumer"].add(Boom)
from workers.cli.main import main
main(["worker", "--role", "maintenance", "--concurrency", "1"])
"""


def test_an_unrecoverable_worker_error_exits_non_zero(redis_server, tmp_path):
    """A supervisor restarting on failure must see one: the exit status says so."""
    import subprocess
    import sys

    env = {**os.environ, "COLLECTOR_BROKER_URL": f"{redis_server.url}/12",
           "COLLECTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite3'}",
           "COLLECTOR_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", UNRECOVERABLE], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "injected unrecoverable failure" in done.stdout + done.stderr
    assert done.returncode != 0
