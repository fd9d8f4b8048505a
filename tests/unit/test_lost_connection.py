"""A call whose database connection is found dead before it wrote anything runs once more;
one that already wrote fails (its transaction is gone, the caller decides)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from collector import sample_data
from collector.db import UnitOfWork
from collector.errors import InternalError
from collector.models import Instance
from tasks import unit_of_work


@pytest.fixture()
def sqlite_env(tmp_path, monkeypatch):
    from collector.db import dispose_engines
    from collector.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'lost.sqlite3'}"
    upgrade(url)
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", url)
    unit_of_work.forget_settings()
    yield url
    unit_of_work.forget_settings()
    dispose_engines()


def _lost() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                            connection_invalidated=True)


def test_a_read_that_lost_its_connection_runs_again(sqlite_env):
    calls = []

    def read(session):
        calls.append(session.execute(text("SELECT 1")).scalar())
        if len(calls) == 1:
            raise _lost()
        return "answer"

    assert unit_of_work.run_in_unit_of_work(read, readonly=True) == "answer"
    assert calls == [1, 1]


def test_a_write_before_any_statement_runs_again_and_commits_once(sqlite_env):
    calls = []

    def write(session):
        calls.append(1)
        if len(calls) == 1:
            raise _lost()
        sample_data.host_node(session, node_id="hva.once")

    unit_of_work.run_in_unit_of_work(write)
    with UnitOfWork(sqlite_env, readonly=True) as uow:
        assert uow.session.scalar(text("SELECT count(*) FROM host_nodes")) == 1
    assert len(calls) == 2


def test_a_call_that_wrote_is_not_run_again(sqlite_env):
    calls = []

    def write_then_lose(session):
        calls.append(1)
        sample_data.host_node(session)  # flushed: an INSERT was sent
        raise _lost()

    with pytest.raises(InternalError):
        unit_of_work.run_in_unit_of_work(write_then_lose)
    assert calls == [1]


def test_a_connection_lost_twice_fails(sqlite_env):
    def always_lost(session):
        raise _lost()

    with pytest.raises(InternalError):
        unit_of_work.run_in_unit_of_work(always_lost, readonly=True)


def test_a_read_only_unit_refuses_writes(sqlite_env):
    def sneaky_write(session):
        session.add(Instance(image_id=1))
        session.flush()

    with pytest.raises(InternalError, match="readonly|read-only"):
        unit_of_work.run_in_unit_of_work(sneaky_write, readonly=True)
