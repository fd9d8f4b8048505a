"""Documents straight from columns: Core selects compiled once, rows read by the driver.

The hot reads (an agent asks for its instance at the start of every job) spend their time
around the SQL, not in it: building ORM objects, cache keys and result objects cost several
times what the database does. Here a ``Query`` is a Core select compiled once per dialect;
``fetch`` runs queries on the session's connection with the driver's own cursor and returns
plain rows. A ``Batch`` is several queries with the same parameters answered together: on
PostgreSQL as one statement (each query's rows aggregated into a JSON array: one round
trip, one execution), elsewhere one after the other. ``Shape`` turns a model's columns
within such a row into the model's document, exactly as ``taggable_hash`` /
``column_values`` build it from an ORM object: the same keys in the same order, times as
ISO-8601 UTC, canonical ids, NULL text as ``""``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ScalarSelect,
    Select,
    Text,
    TypeDecorator,
    cast,
    func,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, FromClause

from collector.models.base import Taggable
from collector.timeutil import to_iso

_MAX_COMPILED = 64
_MAX_JSON_ARGUMENTS = 100  # PostgreSQL's limit of function arguments


class _Placeholder:
    """Stands for a call's parameter while a statement is compiled."""

    __slots__ = ("name", "index")

    def __init__(self, name: str, index: int | None = None) -> None:
        self.name, self.index = name, index


class Query:
    """A Core select compiled once per dialect, run by the driver's cursor (``fetch``).

    Parameters are ``bindparam(name)`` given at each call; a list parameter
    (``bindparam(name, expanding=True)``) is compiled once per list length.
    """

    def __init__(self, statement: Select, order_by: Sequence[ColumnElement] = ()) -> None:
        self.order_by = tuple(order_by)
        self.unordered = statement
        self.statement = statement.order_by(*order_by) if order_by else statement
        self._compiled: dict[tuple, tuple[str, Callable[[Mapping[str, Any]], Any]]] = {}

    def aggregated(self) -> ScalarSelect:
        """The query as one value: its rows as a JSON array of arrays, in its order
        (PostgreSQL)."""
        width = len(self.unordered.selected_columns)
        if width > _MAX_JSON_ARGUMENTS:
            raise ValueError(f"{width} columns: more than json_build_array takes")
        inner = self.unordered.add_columns(
            *(column.label(f"order_{n}") for n, column in enumerate(self.order_by))).subquery()
        columns = list(inner.c)
        if len(columns) != width + len(self.order_by):
            raise ValueError("a column is selected twice: name each one once")
        row = func.json_build_array(*columns[:width])
        keys = columns[width:]
        return (select(func.json_agg(aggregate_order_by(row, *keys) if keys else row))
                .select_from(inner).scalar_subquery())

    def prepare(self, dialect: Dialect,
                params: Mapping[str, Any]) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
        """The SQL text and how to make the driver's parameters of a call's ``params``."""
        lengths = tuple((name, len(value)) for name, value in params.items()
                        if isinstance(value, (list, tuple)))
        key = (dialect.name, lengths)
        found = self._compiled.get(key)
        if found is None:
            found = self._compile(dialect, params)
            if len(self._compiled) < _MAX_COMPILED:  # list lengths vary: keep the first few
                self._compiled[key] = found
        return found

    def _compile(self, dialect: Dialect,
                 params: Mapping[str, Any]) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
        compiled = self.statement.compile(dialect=dialect)
        for bind in compiled.binds.values():
            if bind.type.bind_processor(dialect) is not None:
                raise TypeError(f"{bind.key}: a parameter of type {bind.type} needs conversion")
        stand_ins = {name: [_Placeholder(name, i) for i in range(len(value))]
                     if isinstance(value, (list, tuple)) else _Placeholder(name)
                     for name, value in params.items()}
        expanded = compiled.construct_expanded_state(stand_ins)
        # Each slot of the driver's parameters: a constant of the statement, or where to find
        # the call's value.
        slots = dict(expanded.parameters)
        if expanded.positiontup is not None:
            order = [slots[name] for name in expanded.positiontup]

            def positional(params: Mapping[str, Any]) -> tuple:
                return tuple(_value(slot, params) for slot in order)

            return expanded.statement, positional

        def named(params: Mapping[str, Any]) -> dict[str, Any]:
            return {name: _value(slot, params) for name, slot in slots.items()}

        return expanded.statement, named


def _value(slot: Any, params: Mapping[str, Any]) -> Any:
    if slot.__class__ is not _Placeholder:
        return slot
    value = params[slot.name]
    return value if slot.index is None else value[slot.index]


def fetch(session: Session, *calls: tuple[Query, Mapping[str, Any]]) -> list[list[Sequence]]:
    """The rows of each query, in the session's transaction. Pending changes of the session
    are flushed first (autoflush). Driver errors are raised as SQLAlchemy's ``DBAPIError``;
    a lost connection is invalidated (``connection_invalidated``)."""
    if session.autoflush:
        session.flush()  # as the ORM's reads do: they see the session's own changes
    connection = session.connection()
    dialect = connection.dialect
    driver = connection.connection.dbapi_connection
    observed = connection.dispatch.before_cursor_execute  # statement counters, tracing
    cursor = driver.cursor()
    sql, arguments = "", None
    # Several SQLite reads outside a transaction: one read transaction for them all (one
    # snapshot, and cheaper than a lock and a cache check per statement).
    snapshot = len(calls) > 1 and dialect.name == "sqlite" and not driver.in_transaction
    try:
        if snapshot:
            cursor.execute("BEGIN")
        out = []
        for query, params in calls:
            sql, make_arguments = query.prepare(dialect, params)
            arguments = make_arguments(params)
            if observed:
                observed(connection, cursor, sql, arguments, None, False)
            cursor.execute(sql, arguments)
            out.append(cursor.fetchall())
        if snapshot:
            cursor.execute("COMMIT")
        return out
    except dialect.loaded_dbapi.Error as error:
        if snapshot and driver.in_transaction:
            driver.rollback()
        lost = dialect.is_disconnect(error, driver, cursor)
        if lost:
            connection.invalidate(error)
            # As SQLAlchemy does on a disconnect: the pool's other connections are suspect too.
            connection.engine.pool.dispose()
        raise DBAPIError.instance(sql, arguments, error, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from error
    finally:
        cursor.close()


class Batch:
    """Queries with the same parameters, answered together: on PostgreSQL by one statement
    whose columns are the queries' rows as JSON arrays (one round trip, one execution),
    elsewhere (SQLite: no round trips) one after the other.

    Rows from JSON carry JSON's values: times as ISO-8601 text, numbers without their
    type. ``Shape`` reads both kinds of rows alike.
    """

    def __init__(self, *queries: Query) -> None:
        self.queries = queries
        self.folded = Query(select(*(query.aggregated() for query in queries)))

    def fetch(self, session: Session, params: Mapping[str, Any]) -> list[list[Sequence]]:
        if session.get_bind().dialect.name == "postgresql":
            [[row]] = fetch(session, (self.folded, params))
            return [rows or [] for rows in row]
        return fetch(session, *((query, params) for query in self.queries))


# Values as the driver returns them -> values as the ORM documents hold them.

def iso_time(value: Any) -> str | None:
    """A stored time (SQLite text, a PostgreSQL ``timestamp``) as ISO-8601 UTC."""
    if value is None:
        return None
    if value.__class__ is str:
        if len(value) == 26 and value[10] == " ":  # SQLAlchemy's SQLite storage format
            if value.endswith(".000000"):  # as isoformat(): no fraction when it is zero
                return f"{value[:10]}T{value[11:19]}Z"
            return f"{value[:10]}T{value[11:]}Z"
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return to_iso(value.astimezone(UTC))


def _json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _float(value: Any) -> Any:
    return None if value is None else float(value)


class Shape:
    """A model's columns as its document (``column_values``, or ``taggable_hash`` for
    taggable models): ``columns`` to put in a select, ``document(row, start)`` to read them
    back from the row at ``start``. ``omit``: columns the document leaves out."""

    def __init__(self, model: type, table: FromClause | None = None,
                 taggable: bool | None = None, omit: tuple[str, ...] = ()) -> None:
        table = table if table is not None else model.__table__
        self.model = model
        attrs = sa_inspect(model).column_attrs
        self.keys = [attr.columns[0].name for attr in attrs if attr.columns[0].name not in omit]
        self.taggable = issubclass(model, Taggable) if taggable is None else taggable
        self.prefix = f"{model.prefix}-" if self.taggable else ""
        self.columns: list[ColumnElement] = []
        self.converters: list[tuple[int, str, Callable[[Any], Any]]] = []
        self.texts: list[str] = []
        for index, name in enumerate(self.keys):
            column = table.c[name]
            kind = model.__table__.c[name].type
            if isinstance(kind, JSON):
                # As text on every backend: one conversion, whatever the driver would make of it.
                self.columns.append(cast(column, Text).label(name))
                self.converters.append((index, name, _json))
                continue
            self.columns.append(column)
            if isinstance(kind.impl if isinstance(kind, TypeDecorator) else kind, DateTime):
                self.converters.append((index, name, iso_time))
            elif isinstance(kind, Boolean):
                self.converters.append((index, name, _bool))
            elif isinstance(kind, Float):  # a whole number in JSON comes back an int
                self.converters.append((index, name, _float))
            elif self.taggable and isinstance(kind, Text):
                self.texts.append(name)
        self.width = len(self.keys)
        self.uuid_index = self.keys.index("uuid") if self.taggable else -1
        self.id_index = self.keys.index("id")

    def document(self, row: Sequence[Any], start: int = 0) -> dict[str, Any]:
        values = row[start:start + self.width]
        doc = dict(zip(self.keys, values, strict=True))
        for index, name, convert in self.converters:
            doc[name] = convert(values[index])
        if self.taggable:
            doc["uuid"] = self.prefix + values[self.uuid_index]
            for name in self.texts:
                if doc[name] is None:
                    doc[name] = ""
        return doc

    def present(self, row: Sequence[Any], start: int = 0) -> bool:
        """Whether an outer-joined row exists (its primary key is not NULL)."""
        return row[start + self.id_index] is not None


def canonical(prefix: str, raw: str | None) -> str | None:
    return None if raw is None else f"{prefix}-{raw}"
