"""Run a domain function in one unit of work, then relay what it wrote to the outbox.

The answer is decided by the commit: an error after it (the broker down while relaying)
is logged and left to the outbox sweep, never turned into a failure of committed work.

Errors reach the caller typed, with a plain message: the statement, its parameters and the
driver's text go to the log only (``database_error``):

- a ``CollectorError`` raised by the domain passes as it is;
- a value the database refused is ``InvalidArgument``;
- a constraint the database enforces (a unique index, a foreign key) is ``ValidationFailed``
  saying which rule, when the index says (``Index(..., info={"refusal": ...})``);
- the database unreachable, a deadlock, a serialization failure or an exhausted pool is
  ``TransientError``: nothing was committed and the same call may be retried. Deadlocks,
  serialization failures and connections found dead are first retried here, a few times;
- COMMIT failing on a lost connection is ``CommitOutcomeUnknown`` (an ``InternalError``)
  saying the outcome is unknown (it may have committed), never ``TransientError``, so no
  client retries committed work blindly; an agent repeats only its idempotent reports;
- anything else is ``InternalError`` with a reference to the logged traceback.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from collector.db import UnitOfWork
from collector.errors import (
    CollectorError,
    CommitOutcomeUnknown,
    InternalError,
    InvalidArgument,
    TransientError,
    ValidationFailed,
)
from collector.models import Base
from collector.services.jobs import own_jobs
from tasks import relay, taken_along
from tasks.app import app
from tasks.process_settings import forget_settings, worker_settings

log = logging.getLogger(__name__)

__all__ = ["forget_settings", "run_in_unit_of_work", "worker_settings"]

# SQLSTATEs after which the whole transaction may simply run again.
RETRY_IN_PLACE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
IN_PLACE_ATTEMPTS = 3
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")


def sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def is_transient(exc: BaseException) -> bool:
    """A database error that says "not now" rather than "never"."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if "readonly database" in str(getattr(exc, "orig", "")):
        return False  # SQLite: a reader's unit of work tried to write (a bug, not an outage)
    return isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)) or \
        sqlstate(exc) in RETRY_IN_PLACE_SQLSTATES


def _retry_in_place(exc: BaseException) -> bool:
    return sqlstate(exc) in RETRY_IN_PLACE_SQLSTATES or \
        (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def relay_after_commit(outbox_rows: list[Any]) -> None:
    """Publish the rows a committed unit of work wrote; failures wait for the sweep."""
    if not outbox_rows:
        return
    try:
        relay.publish_committed(relay.publisher(app.conf.broker_url), outbox_rows,
                                settings=worker_settings())
    except Exception:  # noqa: BLE001 - committed work stays committed; the sweep retries
        log.warning("relay after commit failed; the outbox sweep will send %d row(s)",
                    len(outbox_rows), exc_info=True)


def _describe(exc: BaseException) -> str:
    """The driver's own words, for the log only."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {str(orig or exc).strip()}"[:1000]


def _constraint_refusal(exc: IntegrityError) -> str | None:
    """What the violated index says of itself (``info["refusal"]``), when it says anything."""
    orig = exc.orig
    name = getattr(getattr(orig, "diag", None), "constraint_name", None)
    columns: tuple[str, ...] = ()
    match = _SQLITE_UNIQUE.search(str(orig)) if name is None else None
    if match:  # SQLite names the columns ("volumes.instance_id, volumes.guest_device_name")
        columns = tuple(part.strip() for part in match.group(1).split(","))
    for table in Base.metadata.tables.values():
        for index in table.indexes:
            named = name is not None and index.name == name
            same_columns = bool(columns) and columns == tuple(
                f"{table.name}.{column.name}" for column in index.columns)
            if (named or same_columns) and index.info.get("refusal"):
                return str(index.info["refusal"])
    return None


def database_error(exc: BaseException, where: str) -> CollectorError:
    """The typed error for a failure of the database (or anything unexpected) in ``where``;
    the details are logged here and never put in the message."""
    if isinstance(exc, IntegrityError):
        log.warning("constraint refused the change in %s: %s", where, exc.orig)
        return ValidationFailed(_constraint_refusal(exc) or
                                "the change conflicts with the data already stored")
    if isinstance(exc, DataError):  # a value the database refused: bad input that slipped by
        log.warning("value refused by the database in %s: %s", where, exc.orig)
        return InvalidArgument("a value does not fit its column (too long, out of range or "
                               "malformed)")
    if is_transient(exc):
        log.warning("transient database error in %s: %s", where, _describe(exc))
        return TransientError("the database cannot serve the call now (unreachable, deadlock "
                              "or serialization failure); nothing was committed: retry it")
    reference = secrets.token_hex(4)
    log.error("unexpected error [%s] in %s", reference, where, exc_info=exc)
    return InternalError(f"unexpected {type(exc).__name__} in the Collector (logged as "
                         f"[{reference}]); nothing was committed")


def run_in_unit_of_work(fn: Callable[..., Any], args: tuple | list = (),
                        kwargs: dict | None = None, readonly: bool = False) -> Any:
    """Run ``fn(session, *args)`` in one transaction; typed errors pass, others are mapped."""
    for attempt in range(1, IN_PLACE_ATTEMPTS + 1):
        uow = UnitOfWork(readonly=readonly, settings=worker_settings(), relayed=True)
        along = taken_along.Placing()
        try:
            with uow:
                uow.session.info[own_jobs.ON_TAKING_ALONG] = along.announce
                result = fn(uow.session, *args, **(kwargs or {}))
        except CollectorError:
            along.settle()
            raise
        except Exception as exc:  # noqa: BLE001 - every other failure becomes a typed error
            along.settle()
            state = sqlstate(exc)
            if uow.commit_outcome_unknown and (state is None or state.startswith("08")):
                reference = secrets.token_hex(4)
                log.error("COMMIT of %s failed [%s]; it may have been committed: %s",
                          fn.__qualname__, reference, _describe(exc))
                raise CommitOutcomeUnknown("the connection failed during COMMIT: the call may "
                                           f"have been committed (logged as [{reference}])"
                                           ) from None
            if attempt < IN_PLACE_ATTEMPTS and is_transient(exc) and _retry_in_place(exc):
                log.info("%s: %s; running the transaction again", fn.__qualname__,
                         _describe(exc))
                time.sleep(random.uniform(0.01, 0.05) * attempt)
                continue
            raise database_error(exc, fn.__qualname__) from None
        # The answers first: messages held for them wait no longer than the commit.
        along.settle(uow.session.info.get(own_jobs.TAKEN_ALONG))
        relay_after_commit(uow.outbox_rows)
        return result
    raise AssertionError("unreachable")  # pragma: no cover
