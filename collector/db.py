"""Engine, sessions and the unit of work: one transaction per call.

``UnitOfWork`` commits when its block ends and rolls everything back on any exception.
It carries the settings the domain may consult (``settings_of(session)``) and collects
the outbox rows written inside it (``messaging``): after the commit, ``outbox_rows``
holds them (detached, every column loaded), and the caller (the task layer) hands them to
the relay. Nothing here talks to a broker; rows nobody relays wait for the outbox sweep,
exactly as after a crash between commit and publish.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, sessionmaker

from collector.config import Settings, load_settings
from collector.fields import check_flushed_rows

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=8,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - driver glue
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:  # pragma: no cover - driver glue
            # Writers serialize at BEGIN instead of failing on a lock upgrade mid-transaction;
            # read-only units of work take no lock (WAL readers run alongside the writer).
            readonly = conn.get_execution_options().get("collector_readonly", False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    url = url or load_settings().database_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
            factory = sessionmaker(_engines[url], expire_on_commit=False)
            # Values a column cannot hold are refused alike on SQLite and PostgreSQL.
            event.listen(factory, "before_flush", check_flushed_rows)
            _factories[url] = factory
        return _engines[url]


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    url = url or load_settings().database_url
    get_engine(url)
    return _factories[url]


def dispose_engines() -> None:
    """Forget pooled connections (after fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


OUTBOX_ROWS = "outbox_rows"  # session.info key: outbox rows written in this transaction


class UnitOfWork:
    """One transaction (``with UnitOfWork() as uow: fn(uow.session)``).

    An error from COMMIT itself (the connection lost at that moment) leaves the outcome
    unknown; ``commit_outcome_unknown`` says so, and the caller must not call it a failure.

    ``readonly`` is a hint for readers: on SQLite they begin without taking the write lock,
    so reads run alongside a writer (WAL). A write in such a unit still works, but may wait.
    After a successful commit ``outbox_rows`` lists the outbox rows to relay.
    """

    def __init__(self, url: str | None = None, readonly: bool = False,
                 settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.url = url or self.settings.database_url
        self.readonly = readonly
        self.outbox_rows: list[Any] = []
        # True when COMMIT itself failed: the transaction may or may not be committed.
        self.commit_outcome_unknown = False
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = session_factory(self.url)()
        self.session.info["settings"] = self.settings
        self.session.begin()
        if self.readonly:
            self.session.connection(execution_options={"collector_readonly": True})
        return self

    @property
    def outbox_ids(self) -> list[int]:
        return [row.id for row in self.outbox_rows]

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        session = self.session
        try:
            if exc_type is None:
                session.flush()  # a refused write fails here, surely rolled back
                try:
                    session.commit()
                except BaseException:
                    self.commit_outcome_unknown = True
                    raise
                # Rows written in a savepoint that rolled back are transient again: they
                # were never committed and must not be published.
                self.outbox_rows = [row for row in session.info.get(OUTBOX_ROWS, ())
                                    if not sa_inspect(row).transient]
            else:
                session.rollback()
        finally:
            session.info.pop(OUTBOX_ROWS, None)
            session.close()


@contextmanager
def unit_of_work(url: str | None = None, readonly: bool = False) -> Iterator[Session]:
    """``UnitOfWork`` for callers that only need the session (outbox rows go to the sweep)."""
    with UnitOfWork(url, readonly) as uow:
        yield uow.session


def settings_of(session: Session) -> Settings:
    """The settings of the unit of work running ``session`` (the process's when none)."""
    return session.info.get("settings") or load_settings()


def record_outbox_row(session: Session, row: Any) -> None:
    """Remember an outbox row written in this transaction (relayed after the commit)."""
    session.info.setdefault(OUTBOX_ROWS, []).append(row)


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


def skip_locked(session: Session, stmt: Select) -> Select:
    """Lock the selected rows, skipping rows another transaction holds (PostgreSQL).

    Concurrent workers (poppers, reapers, sweeps) then split the rows instead of queueing
    behind each other; SQLite serializes writers at BEGIN IMMEDIATE already.
    """
    if dialect_name(session) == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt
