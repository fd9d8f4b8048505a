"""The unit of work: one transaction per call.

``UnitOfWork`` commits when its block ends and rolls everything back on any exception.
It carries the settings the domain may consult (``settings_of(session)``) and collects
the outbox rows written inside it (``collector.db.outbox``): after the commit,
``outbox_rows`` holds them (detached, every column loaded), and the caller (the task layer)
hands them to the relay. Nothing here talks to a broker; rows nobody relays wait for the
outbox sweep, exactly as after a crash between commit and publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from collector.config import Settings, load_settings
from collector.db.engine import session_factory

OUTBOX_ROWS = "outbox_rows"  # session.info key: outbox rows written in this transaction
# session.info key: True when the caller publishes this transaction's rows after its commit.
RELAYED_BY_CALLER = "outbox_relayed_by_caller"


class UnitOfWork:
    """One transaction (``with UnitOfWork() as uow: fn(uow.session)``).

    An error from COMMIT itself (the connection lost at that moment) leaves the outcome
    unknown; ``commit_outcome_unknown`` says so, and the caller must not call it a failure.

    ``readonly``: for readers. The session reads through the read-only engine (statements
    run on their own, no transaction to begin or commit; a write is refused). After a
    successful commit ``outbox_rows`` lists the outbox rows to relay.

    ``relayed``: the caller publishes ``outbox_rows`` after the commit (the task layer), so
    the rows are written claimed by it and the sweep leaves them to it.
    """

    def __init__(self, url: str | None = None, readonly: bool = False,
                 settings: Settings | None = None, relayed: bool = False) -> None:
        self.settings = settings or load_settings()
        self.url = url or self.settings.database_url
        self.readonly = readonly
        self.relayed = relayed
        self.outbox_rows: list[Any] = []
        # True when COMMIT itself failed: the transaction may or may not be committed.
        self.commit_outcome_unknown = False
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = session_factory(self.url, self.readonly)()
        self.session.info["settings"] = self.settings
        self.session.info[RELAYED_BY_CALLER] = self.relayed
        self.session.begin()
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
