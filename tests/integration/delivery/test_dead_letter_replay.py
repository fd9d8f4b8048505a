"""No event is dropped when its handler fails: retried, parked, listed, replayed.

Failures are injected in the database, as an outage would cause them: a trigger on
``alarms`` refuses updates with a serialization failure (transient) or a plain error (not
transient), and the whole PostgreSQL server is stopped for longer than the retries last.
Real worker, real beat (its outbox sweep sends replays), real Redis, own PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import select

from collector.db import dispose_engines, unit_of_work
from collector.ids import new_uuid
from collector.models import Alarm, DeadLetter, QueuedJob
from collector.scheduling import teardown
from tests.support.checks import wait_for
from tests.support.servers import PostgresServer, start_beat, start_worker
from workers.agent.client import Collector
from workers.demo.world import make

pytestmark = pytest.mark.integration

REDIS_DB = 9
HANDLER = "events.alarm-collector.on_instance_terminated"
FAST_RETRIES = {"COLLECTOR_EVENT_RETRIES": "2", "COLLECTOR_EVENT_RETRY_BACKOFF_MAX": "2"}


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    from collector.db.migrate import upgrade

    pg = PostgresServer().start()
    try:
        db_url = pg.create_database("dead_letters")
        upgrade(db_url)
        broker = f"{redis_server.url}/{REDIS_DB}"
        worker = start_worker(db_url, broker, extra_args=("--concurrency", "4"),
                              env=FAST_RETRIES)
        beat = start_beat(db_url, broker, str(tmp_path_factory.mktemp("beat")),
                          env={**worker.env, **FAST_RETRIES})
        client = Collector(broker, timeout=30)
        yield {"pg": pg, "db_url": db_url, "worker": worker, "client": client, "env": worker.env}
        client.close()
        beat.stop()
        worker.stop()
    finally:
        dispose_engines()
        pg.stop()


def _sql(db_url: str, statement: str) -> None:
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(statement)


def _refuse_alarm_updates(db_url: str, sqlstate: str) -> None:
    _sql(db_url, f"""
        CREATE OR REPLACE FUNCTION refuse_alarm_updates() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = '{sqlstate}'; END
        $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS refuse_alarm_updates ON alarms;
        CREATE TRIGGER refuse_alarm_updates BEFORE UPDATE ON alarms
            FOR EACH ROW EXECUTE FUNCTION refuse_alarm_updates();""")


def _accept_alarm_updates(db_url: str) -> None:
    _sql(db_url, "DROP TRIGGER IF EXISTS refuse_alarm_updates ON alarms")


def _terminated_instance_with_cpu_alarm(db_url: str) -> dict:
    with unit_of_work(db_url) as session:
        inst = make.running_instance(session)
        alarm = make.alarm(session, inst, "cpu.usage")
        teardown.finalize_instance(session, inst)
        return {"id": inst.canonical_uuid, "node": inst.host_node.node_id, "alarm": alarm.id}


def _wait(predicate, timeout: float, what: str):
    # An error counts as not yet: the database may be down on purpose.
    return wait_for(predicate, what, timeout, every=0.2, ignore=(Exception,))


def _letters(db_url: str, inst_id: str) -> list[DeadLetter]:
    with unit_of_work(db_url) as session:
        return [d for d in session.scalars(select(DeadLetter).where(
            DeadLetter.task_name == HANDLER).order_by(DeadLetter.id)) if d.args[1] == [inst_id]]


def _parked_while_refused(cluster, sqlstate: str) -> tuple[dict, DeadLetter]:
    """A terminated instance's event, published while alarm updates fail with ``sqlstate``
    (``_refuse_alarm_updates``): the instance and the one dead letter its handler left."""
    db_url = cluster["db_url"]
    inst = _terminated_instance_with_cpu_alarm(db_url)
    _refuse_alarm_updates(db_url, sqlstate)
    try:
        cluster["client"].events.publish("hva/instance_terminated", [inst["id"]],
                                         sender=inst["node"])
        [letter] = _wait(lambda: _letters(db_url, inst["id"]), 30, "the dead letter")
    finally:
        _accept_alarm_updates(db_url)
    return inst, letter


def _alarm_deleted(db_url: str, alarm_pk: int) -> bool:
    with unit_of_work(db_url) as session:
        return session.get(Alarm, alarm_pk).deleted_at is not None


def _registry_jobs(db_url: str, inst: dict) -> int:
    with unit_of_work(db_url) as session:
        return len(session.scalars(select(QueuedJob).where(
            QueuedJob.queue_name == f"resource-alarm-registry.{inst['node']}",
            QueuedJob.resource_id == inst["id"])).all())


def _cli(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", "dead-letters", *args],
                          env=cluster["env"], capture_output=True, text=True, timeout=60)


def test_failing_handler_is_retried_then_dead_lettered_then_replayed(cluster):
    db_url = cluster["db_url"]
    inst, letter = _parked_while_refused(cluster, "40001")  # serialization failure: transient
    assert (letter.source, letter.error_type, letter.attempts) == ("task", "TransientError", 3)
    assert letter.queue == "events.alarm-collector" and letter.replayed_at is None
    log = cluster["worker"].log_text()
    assert f"{HANDLER}[{letter.task_id}] failed" in log and "retry 2/2" in log
    assert not _alarm_deleted(db_url, inst["alarm"])

    listed = _cli(cluster, "list")
    assert listed.returncode == 0 and f"{letter.id:>6} task" in listed.stdout
    replayed = _cli(cluster, "replay", str(letter.id))
    assert replayed.returncode == 0 and f"replayed 1: {letter.id}" in replayed.stdout

    _wait(lambda: _alarm_deleted(db_url, inst["alarm"]), 30, "the replayed handler")
    assert _wait(lambda: _registry_jobs(db_url, inst), 10, "the registry job") == 1
    assert f"{letter.id:>6} task" not in _cli(cluster, "list").stdout
    assert f"{letter.id:>6} task" in _cli(cluster, "list", "--all").stdout
    [again] = _letters(db_url, inst["id"])
    assert again.replay_count == 1 and again.replayed_at is not None
    unknown = _cli(cluster, "replay", "999999")
    assert unknown.returncode == 1 and "UnknownDeadLetter" in unknown.stderr


def test_handler_error_that_is_not_transient_is_parked_at_once(cluster):
    db_url = cluster["db_url"]
    inst, letter = _parked_while_refused(cluster, "P0001")  # a plain error: retrying won't help
    assert (letter.error_type, letter.attempts) == ("InternalError", 1)
    # The message is plain (no SQL, no driver text); the details are in the worker's log
    # under the reference it gives.
    assert "logged as [" in letter.error and "injected failure" not in letter.error

    replayed = _cli(cluster, "replay")  # every letter not replayed yet
    assert replayed.returncode == 0 and str(letter.id) in replayed.stdout
    _wait(lambda: _alarm_deleted(db_url, inst["alarm"]), 30, "the replayed handler")
    assert _wait(lambda: _registry_jobs(db_url, inst), 10, "the registry job") == 1


def test_event_outlives_a_database_outage_longer_than_its_retries(cluster):
    """Neither handled nor parkable while PostgreSQL is down: kept in the broker."""
    db_url, pg, worker = cluster["db_url"], cluster["pg"], cluster["worker"]
    inst = _terminated_instance_with_cpu_alarm(db_url)
    marker = f"hva.m{new_uuid()}"  # this test's event, told apart in the worker's log
    dispose_engines()
    pg.pause()
    try:
        cluster["client"].events.publish("hva/instance_terminated", [inst["id"]], sender=marker)
        _wait(lambda: "cannot be parked" in worker.log_text(), 30, "the parking failure")
    finally:
        pg.resume()
    _wait(lambda: _alarm_deleted(db_url, inst["alarm"]), 30, "the event after the outage")
    assert _wait(lambda: _registry_jobs(db_url, inst), 10, "the registry job") == 1
    assert _letters(db_url, inst["id"]) == []
