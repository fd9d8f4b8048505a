"""A call whose database connection is found dead before COMMIT runs again on a fresh one
(its first transaction is gone with the connection, so it commits once); a connection that
stays dead is a retryable TransientError; a reader that writes is a bug, not an outage."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from collector.db import UnitOfWork
from collector.errors import InternalError, TransientError
from collector.models import Instance
from tasks import execution as unit_of_work
from workers.demo.world import make


@pytest.fixture()
def sqlite_env(migrated_sqlite, monkeypatch):
    from collector.db import dispose_engines

    url = migrated_sqlite("lost.sqlite3")  # a fresh migrated database per test
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", url)
    unit_of_work.forget_settings()
    yield url
    unit_of_work.forget_settings()
    dispose_engines()


def _lost() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                            connection_invalidated=True)


def _hosts(url: str) -> int:
    with UnitOfWork(url, readonly=True) as uow:
        return uow.session.scalar(text("SELECT count(*) FROM host_nodes"))


def test_a_read_that_lost_its_connection_runs_again(sqlite_env):
    calls = []

    def read(session):
        calls.append(session.execute(text("SELECT 1")).scalar())
        if len(calls) == 1:
            raise _lost()
        return "answer"

    assert unit_of_work.run_in_unit_of_work(read, readonly=True) == "answer"
    assert calls == [1, 1]


def test_a_write_that_lost_its_connection_before_commit_runs_again_and_commits_once(
        sqlite_env):
    calls = []

    def write(session):
        calls.append(1)
        make.host_node(session, node_id=f"hva.once{len(calls)}")  # flushed: sent
        if len(calls) == 1:
            raise _lost()  # the first transaction never commits

    unit_of_work.run_in_unit_of_work(write)
    assert _hosts(sqlite_env) == 1
    assert len(calls) == 2


def test_a_connection_lost_every_time_is_a_retryable_error(sqlite_env):
    calls = []

    def always_lost(session):
        calls.append(1)
        raise _lost()

    with pytest.raises(TransientError):
        unit_of_work.run_in_unit_of_work(always_lost, readonly=True)
    assert len(calls) == unit_of_work.IN_PLACE_ATTEMPTS


def test_a_read_only_unit_refuses_writes(sqlite_env):
    def sneaky_write(session):
        session.add(Instance(image_id=1))
        session.flush()

    with pytest.raises(InternalError):
        unit_of_work.run_in_unit_of_work(sneaky_write, readonly=True)
    with UnitOfWork(sqlite_env, readonly=True) as uow:
        assert uow.session.scalar(text("SELECT count(*) FROM instances")) == 0
