"""Database failures reach the caller typed, with a plain message: no SQL, no parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from collector.embedded import free_port
from collector.errors import InternalError, InvalidArgument, TransientError
from tasks.unit_of_work import database_error, is_transient

SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WHERE", "VALUES", "parameters")


def _plain(message: str) -> bool:
    return not any(word in message for word in SQL_WORDS)


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


def test_anything_unexpected_is_internal_error_with_a_reference_only(caplog):
    error = database_error(KeyError("password=hunter2"), "test")
    assert isinstance(error, InternalError) and type(error) is InternalError
    assert "hunter2" not in error.message and "KeyError" in error.message
    reference = error.message.split("[", 1)[1].split("]", 1)[0]
    assert reference in caplog.text
