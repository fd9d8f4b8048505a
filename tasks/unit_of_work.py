"""Run a domain function in one unit of work, then relay what it wrote to the outbox.

The answer is decided by the commit: an error after it (the broker down while relaying)
is logged and left to the outbox sweep, never turned into a failure of committed work.

Errors reach the caller typed:

- a ``CollectorError`` raised by the domain passes as it is;
- a value the database refused is ``InvalidArgument``;
- the database unreachable, a deadlock, a serialization failure or an exhausted pool is
  ``TransientError`` (nothing committed; the same call may succeed later). Deadlocks,
  serialization failures and connections found dead are first retried here, a few times;
- COMMIT failing on a lost connection is ``InternalError`` saying the outcome is unknown
  (it may have committed), never ``TransientError``, so no client retries committed work;
- anything else is ``InternalError``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from collector.db import UnitOfWork
from collector.errors import CollectorError, InternalError, InvalidArgument, TransientError
from tasks import relay
from tasks.app import app

log = logging.getLogger(__name__)

# SQLSTATEs after which the whole transaction may simply run again.
RETRY_IN_PLACE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
IN_PLACE_ATTEMPTS = 3


def sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def is_transient(exc: BaseException) -> bool:
    """A database error that says "not now" rather than "never"."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
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
        relay.publish_committed(relay.publisher(app.conf.broker_url), outbox_rows)
    except Exception:  # noqa: BLE001 - committed work stays committed; the sweep retries
        log.warning("relay after commit failed; the outbox sweep will send %d row(s)",
                    len(outbox_rows), exc_info=True)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {str(orig or exc).strip()}"[:1000]


def run_in_unit_of_work(fn: Callable[..., Any], args: tuple | list = (),
                        kwargs: dict | None = None, readonly: bool = False) -> Any:
    """Run ``fn(session, *args)`` in one transaction; typed errors pass, others are wrapped."""
    for attempt in range(1, IN_PLACE_ATTEMPTS + 1):
        uow = UnitOfWork(readonly=readonly)
        try:
            with uow:
                result = fn(uow.session, *args, **(kwargs or {}))
        except CollectorError:
            raise
        except DataError as exc:  # a value the database refused: bad input that slipped through
            log.warning("value refused by the database in %s: %s", fn.__qualname__, exc.orig)
            raise InvalidArgument(f"a value does not fit its column: {exc.orig}") from None
        except Exception as exc:
            state = sqlstate(exc)
            if uow.commit_outcome_unknown and (state is None or state.startswith("08")):
                log.error("COMMIT of %s failed; it may have been committed: %s",
                          fn.__qualname__, _describe(exc))
                raise InternalError("the connection failed during COMMIT: the call may have "
                                    f"been committed ({_describe(exc)})") from None
            if not is_transient(exc):
                log.exception("unexpected error in %s", fn.__qualname__)
                raise InternalError(f"{type(exc).__name__}: {exc}") from None
            if attempt < IN_PLACE_ATTEMPTS and _retry_in_place(exc):
                log.info("%s: %s; running the transaction again", fn.__qualname__,
                         _describe(exc))
                time.sleep(random.uniform(0.01, 0.05) * attempt)
                continue
            log.warning("transient database error in %s: %s", fn.__qualname__, _describe(exc))
            raise TransientError(_describe(exc)) from None
        relay_after_commit(uow.outbox_rows)
        return result
    raise AssertionError("unreachable")  # pragma: no cover
