"""Database failures reach the caller typed, with a plain message: no SQL, no parameters."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from collector.db import unit_of_work
from collector.errors import InternalError, InvalidArgument, TransientError, ValidationFailed
from collector.models import Volume
from collector.models.volumes import ISCSI
from tasks.execution import database_error, is_transient, run_in_unit_of_work
from workers.demo.world import make
from workers.embedded_redis import free_port

SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WHERE", "VALUES", "parameters")


def _plain(message: str) -> bool:
    return not any(word in message for word in SQL_WORDS)


def _two_attached_on_vdb(session):
    """Two volumes attached to one instance under ``vdb``, written past the service's check."""
    inst = make.instance(session, make.host_node(session))
    node = make.storage_node(session)
    make.volume(session, inst, ISCSI, node=node, guest_device_name="vdb")
    other = make.volume(session, None, ISCSI, node=node, state="available")
    session.flush()
    other.instance_id, other.guest_device_name, other.state = inst.id, "vdb", "attached"
    session.flush()


def test_the_index_refuses_two_attached_volumes_on_one_guest_device(session):
    nested = session.begin_nested()
    with pytest.raises(IntegrityError) as info:
        _two_attached_on_vdb(session)
    nested.rollback()
    error = database_error(info.value, "test")
    assert isinstance(error, ValidationFailed)
    refusal = next(i for i in Volume.__table__.indexes
                   if i.name == "ux_volumes_attached_guest_device").info["refusal"]
    assert error.message == refusal
    assert _plain(error.message) and "vdb" not in error.message


def test_the_index_leaves_detached_deleted_and_unnamed_volumes_alone(session):
    inst = make.instance(session, make.host_node(session))
    node = make.storage_node(session)
    make.volume(session, inst, ISCSI, node=node, guest_device_name="vdc")
    for state in ("available", "detaching", "deleted"):
        make.volume(session, inst, ISCSI, node=node, guest_device_name="vdc",
                           state=state)
    for _ in range(2):
        make.volume(session, inst, ISCSI, node=node, guest_device_name="")
    session.flush()


def _volumes(db_url: str) -> int:
    with unit_of_work(db_url) as session:
        return session.scalar(text("SELECT COUNT(*) FROM volumes"))


def test_a_constraint_in_any_unit_of_work_is_validation_failed_without_sql(db_url, monkeypatch):
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", db_url)
    before = _volumes(db_url)
    with pytest.raises(ValidationFailed) as info:
        run_in_unit_of_work(_two_attached_on_vdb)
    assert _plain(info.value.message)
    assert _volumes(db_url) == before  # nothing of it was committed


def test_a_value_the_database_refuses_is_invalid_argument_without_sql():
    exc = DataError("INSERT INTO volumes (size) VALUES (%(size)s)", {"size": 10 ** 30},
                    Exception("numeric field overflow"))
    error = database_error(exc, "test")
    assert isinstance(error, InvalidArgument) and _plain(error.message)
    assert str(10 ** 30) not in error.message


def test_an_unreachable_database_is_transient_and_says_nothing_of_the_statement():
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                           connect_args={"connect_timeout": 2})
    with pytest.raises(OperationalError) as info, engine.connect() as conn:
        conn.execute(text("SELECT secret FROM volumes WHERE id = 42"))
    assert is_transient(info.value)
    error = database_error(info.value, "test")
    assert isinstance(error, TransientError) and error.error_type == "TransientError"
    assert "127.0.0.1" not in error.message and _plain(error.message)


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_serialization_failures_and_deadlocks_are_transient(sqlstate):
    class Orig(Exception):
        pass

    orig = Orig("could not serialize access due to concurrent update")
    orig.sqlstate = sqlstate
    exc = DBAPIError("UPDATE volumes SET state = %(state)s", {"state": "x"}, orig)
    assert is_transient(exc)
    error = database_error(exc, "test")
    assert isinstance(error, TransientError) and _plain(error.message)
    assert "retry" in error.message


def test_anything_unexpected_is_internal_error_with_a_reference_only(monkeypatch):
    logger = logging.getLogger("tasks.execution")
    monkeypatch.setattr(logger, "disabled", False)  # whatever logging setup ran before
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        error = database_error(KeyError("password=hunter2"), "test")
    finally:
        logger.removeHandler(handler)
    assert isinstance(error, InternalError) and type(error) is InternalError
    assert "hunter2" not in error.message and "KeyError" in error.message
    reference = error.message.split("[", 1)[1].split("]", 1)[0]
    assert any(reference in record.getMessage() for record in records)
