"""What a caller is told when the database fails: typed, and honest about commits."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from collector.errors import CommitOutcomeUnknown, InternalError, TransientError
from tasks import execution as uow_module
from tasks.execution import run_in_unit_of_work


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _db_error(sqlstate: str | None, message: str = "boom") -> OperationalError:
    return OperationalError("SELECT 1", {}, _Orig(message, sqlstate))


@pytest.fixture()
def on_test_db(db_url, monkeypatch):
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", db_url)
    monkeypatch.setattr(uow_module, "relay_after_commit", lambda rows: None)
    return db_url


def test_deadlocks_and_serialization_failures_run_the_transaction_again(on_test_db):
    calls = []

    def flaky(session: Session) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise _db_error("40P01" if len(calls) == 1 else "40001")
        return session.execute(text("SELECT 41 + 1")).scalar_one()

    assert run_in_unit_of_work(flaky) == 42 and len(calls) == 3


def test_an_unreachable_database_is_a_transient_error(on_test_db):
    def down(session: Session) -> None:
        raise _db_error(None, "connection refused")

    with pytest.raises(TransientError) as info:
        run_in_unit_of_work(down)
    assert info.value.error_type == "TransientError" and "retry" in str(info.value)
    assert "connection refused" not in str(info.value)  # the driver's words stay in the log


def test_a_deadlock_that_persists_is_transient_after_three_runs(on_test_db):
    calls = []

    def stuck(session: Session) -> None:
        calls.append(1)
        raise _db_error("40P01", "deadlock detected")

    with pytest.raises(TransientError):
        run_in_unit_of_work(stuck)
    assert len(calls) == 3


def test_a_commit_cut_by_a_lost_connection_is_not_called_transient(on_test_db, monkeypatch):
    def lost(self: Session) -> None:
        raise _db_error(None, "server closed the connection unexpectedly")

    monkeypatch.setattr(Session, "commit", lost)
    with pytest.raises(CommitOutcomeUnknown) as info:
        run_in_unit_of_work(lambda session: None)
    assert isinstance(info.value, InternalError) and not isinstance(info.value, TransientError)
    assert "may have been committed" in str(info.value)


def test_a_committed_call_answers_even_when_its_relay_finds_the_broker_down(db_url, monkeypatch):
    from collector.db import unit_of_work
    from collector.models import OutboxMessage, QueuedJob
    from collector.services.jobs import push as job_push
    from workers.embedded_redis import free_port

    broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", db_url)
    monkeypatch.setitem(uow_module.app.conf, "broker_url", broker_url)
    # The relay makes every attempt its retry policy allows, without the pauses between them
    # (1.5 s of sleeping on a port nobody will open).
    publisher = uow_module.relay.publisher(broker_url)
    monkeypatch.setitem(publisher.conf, "task_publish_retry_policy", {
        **publisher.conf.task_publish_retry_policy, "interval_step": 0, "interval_max": 0})
    job_id = run_in_unit_of_work(job_push.push_job, ("hva-handle.hva.down1", "reboot", []))
    with unit_of_work(db_url) as session:
        assert QueuedJob.by_cuuid(session, job_id).state == "pending"
        row = session.query(OutboxMessage).filter_by(task_id=job_id).one()
        assert row.sent_at is None and "OperationalError" in row.last_error  # the sweep's now


def test_a_committed_call_answers_whatever_its_relay_raises(on_test_db, monkeypatch):
    from collector.services.jobs import push as job_push

    def broken(*_args, **_kwargs):
        raise _db_error(None, "the database went away while stamping")

    monkeypatch.undo()  # the real relay_after_commit this time
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", on_test_db)
    monkeypatch.setattr(uow_module.relay, "publish_committed", broken)
    assert run_in_unit_of_work(job_push.push_job, ("hva-handle.hva.down2", "reboot", []))
