"""Engines and sessions (one read-write and one read-only per database URL), the
database's clock, and row locks that skip what another transaction holds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, any_, bindparam, create_engine, event, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from collector.config import load_settings
from collector.fields import check_flushed_rows, check_new_rows

_lock = threading.Lock()
_engines: dict[tuple[str, bool], Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}

def make_engine(url: str, readonly: bool = False) -> Engine:
    """An engine tuned for the backend: SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE.

    ``readonly``: an engine for readers. Each statement runs on its own (autocommit: no
    BEGIN/COMMIT round trips, which on PostgreSQL cost as much as a read) and any write is
    refused by the database. Like PostgreSQL's default isolation (read committed), a reader
    sees each statement's own committed snapshot.

    No ``pool_pre_ping`` (a round trip per call): a connection found dead is invalidated
    with the rest of the pool, and the caller runs the transaction again (``run_in_unit_of_work``).
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=8,
            max_overflow=8,
        )

        # FULL: a commit is on disk before the call answers (an fsync of the WAL per write
        # transaction). NORMAL: it survives a crash of the process but maybe not of the
        # machine; no fsync per commit (COLLECTOR_SQLITE_SYNCHRONOUS).
        synchronous = load_settings().sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - driver glue
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            if readonly:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        if not readonly:
            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:  # pragma: no cover - driver glue
                # Writers serialize at BEGIN instead of failing on a lock upgrade mid-transaction.
                conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if readonly:
        # Generic plans: the readers' statements are the same few, each selecting by a key;
        # left to choose, PostgreSQL may plan a document's statement again at every call
        # (milliseconds, several times its execution).
        return create_engine(url, pool_size=10, max_overflow=10, isolation_level="AUTOCOMMIT",
                             connect_args={"options": "-c default_transaction_read_only=on "
                                                      "-c plan_cache_mode=force_generic_plan"})
    return create_engine(url, pool_size=10, max_overflow=10)


def _key(url: str | None, readonly: bool) -> tuple[str, bool]:
    url = url or load_settings().database_url
    # An in-memory SQLite database exists once per engine: readers share the writers'.
    in_memory = url.startswith("sqlite") and url.rstrip("/") in ("sqlite:", "sqlite:/") \
        or ":memory:" in url
    return url, readonly and not in_memory


def get_engine(url: str | None = None, readonly: bool = False) -> Engine:
    key = _key(url, readonly)
    factory = _factories.get(key)
    if factory is None:
        with _lock:
            if key not in _engines:
                _engines[key] = make_engine(*key)
                factory = sessionmaker(_engines[key], expire_on_commit=False)
                # Values a column cannot hold are refused alike on SQLite and PostgreSQL.
                event.listen(factory, "before_flush", check_flushed_rows)
                _factories[key] = factory
    return _engines[key]


def session_factory(url: str | None = None, readonly: bool = False) -> sessionmaker[Session]:
    key = _key(url, readonly)
    factory = _factories.get(key)
    if factory is None:
        get_engine(*key)
        factory = _factories[key]
    return factory


def dispose_engines() -> None:
    """Forget pooled connections (after fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def any_of(column: Any, name: str, dialect: str = "postgresql") -> Any:
    """``column`` is one of the list bound to ``name``, for a statement built once: on
    PostgreSQL ``column = ANY(:name)``, one statement whatever the list's length
    (``column.in_(values)`` renders its SQL again at each execution, a parameter per value,
    and PostgreSQL prepares each length as a statement of its own: a one-row UPDATE cost
    0.45 ms of CPU that way, 0.2 ms this way); elsewhere an expanding ``IN``."""
    if dialect != "postgresql":
        return column.in_(bindparam(name, expanding=True))
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


def matches_any(session: Session, column: Any, values: Any) -> Any:
    """``column`` is one of ``values``: ``= ANY(array)`` on PostgreSQL (one statement for
    every length, see ``any_of``), ``IN (...)`` elsewhere."""
    if dialect_name(session) == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def db_now(session: Session) -> datetime:
    """The database server's clock (UTC): liveness never depends on a worker's clock."""
    from sqlalchemy import text

    if dialect_name(session) == "postgresql":
        value = session.execute(text("SELECT (now() AT TIME ZONE 'UTC')")).scalar_one()
    else:
        raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC)


# Eager loads (selectinload) fetch children with ``IN (...)`` lists; SQLAlchemy's default
# of 500 keys per query would make a node's document cost more queries as the node grows.
# One query per relationship for up to this many parents keeps the count constant.
EAGER_CHUNK = 10_000


def insert_if_absent(session: Session, model: Any, unique: list[str] | None,
                     **values: Any) -> Any:
    """Insert one row of ``model`` unless a row with the same ``unique`` columns exists
    (None: any unique key of the table; ``ON CONFLICT DO NOTHING``, SQLite and
    PostgreSQL): its id, or None when it existed (RETURNING, not rowcount: psycopg reports
    -1 for a row not inserted).
    On PostgreSQL a concurrent insert of the same key waits for the other's commit."""
    return session.execute(_insert_ignoring(session, model, unique).values(**values)
                           .returning(model.id)).scalar()


def insert_all_if_absent(session: Session, model: Any, unique: list[str] | None,
                         rows: list[dict[str, Any]], returning: Any = None) -> list[Any]:
    """``insert_if_absent`` of several rows (``unique`` None: any unique key of the table)
    in one statement: the ``returning`` column (the id unless told) of each row inserted.

    The rows go as parameter sets, which SQLAlchemy folds into one ``INSERT ... VALUES``
    ("insertmanyvalues") under a statement compiled once; rows written into the statement
    itself (``values([...])``) would compile it anew at every call."""
    stmt = _insert_ignoring(session, model, unique).returning(
        model.id if returning is None else returning)
    return list(session.connection().execute(stmt, rows).scalars())


_INSERTS: dict[tuple[Any, Any], Any] = {}


def insert_now(session: Session, model: Any, rows: list[dict[str, Any]],
               returning: Any = None) -> list[Any]:
    """Rows of ``model`` (by attribute) inserted now, in one statement built once, through
    the session's connection: the ``returning`` column of each row, in order (none without
    it). For rows the transaction never reads back as objects: a flush of the unit of work
    costs about 0.4 ms of CPU for a row, this 0.17. Refused as a flush refuses them
    (``fields.check_new_rows``); the columns' defaults fill what a row leaves out."""
    check_new_rows(model, rows)
    stmt = _INSERTS.get((model, returning))
    if stmt is None:
        stmt = insert(model) if returning is None else \
            insert(model).returning(returning, sort_by_parameter_order=True)
        _INSERTS[(model, returning)] = stmt
    result = session.connection().execute(stmt, rows)
    return [] if returning is None else list(result.scalars())


# Per mapper: how each column gets its value when a new object leaves it unset (None: a
# default only the database or the unit of work can compute; such a model is flushed).
_FILLS: dict[Any, list[tuple[str, Any]] | None] = {}


def _fills(mapper: Any) -> list[tuple[str, Any]] | None:
    if mapper not in _FILLS:
        fills: list[tuple[str, Any]] | None = []
        primary = {column.key for column in mapper.primary_key}
        for attr in mapper.column_attrs:
            [column] = attr.columns
            default = column.default
            if column.key in primary:
                continue
            if attr.key != column.key:  # rows are written by attribute name
                fills = None
                break
            if default is None and column.server_default is None:
                fills.append((attr.key, lambda: None))
            elif default is not None and default.is_scalar:
                fills.append((attr.key, lambda value=default.arg: value))
            elif default is not None and default.is_callable:
                fills.append((attr.key, lambda fn=default.arg: fn(None)))
            else:
                fills = None
                break
        _FILLS[mapper] = fills
    return _FILLS[mapper]


def insert_objects_now(session: Session, objects: list[Any]) -> bool:
    """New objects of one model inserted now in one prebuilt statement (``insert_now``) and
    put in the session as loaded rows, every column set (a default computed here as the
    flush computes it): no flush of the unit of work for them, and nothing to read back.
    False, nothing done, in a savepoint (its rollback would leave them in the session as
    written) or for a model with a default only the database computes: the caller adds
    them for the flush."""
    if not objects or session.in_nested_transaction():
        return False
    mapper = sa_inspect(type(objects[0]))
    fills = _fills(mapper)
    if fills is None:
        return False
    rows = []
    for obj in objects:
        loaded = sa_inspect(obj).dict
        rows.append({key: loaded[key] if key in loaded else fill() for key, fill in fills})
    [primary] = mapper.primary_key
    for obj, values, key in zip(objects, rows, insert_now(session, mapper.class_, rows, primary),
                                strict=True):
        for name, value in values.items():
            set_committed_value(obj, name, value)
        set_committed_value(obj, primary.key, key)
        make_transient_to_detached(obj)
        session.add(obj)
    return True


def _insert_ignoring(session: Session, model: Any, unique: list[str] | None) -> Any:
    insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    return insert(model).on_conflict_do_nothing(index_elements=unique)


def skip_locked(session: Session, stmt: Select) -> Select:
    """Lock the selected rows, skipping rows another transaction holds (PostgreSQL).

    Concurrent workers (poppers, reapers, sweeps) then split the rows instead of queueing
    behind each other; SQLite serializes writers at BEGIN IMMEDIATE already.
    """
    if dialect_name(session) == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt
