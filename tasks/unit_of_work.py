"""Run a domain function in one unit of work, then relay what it wrote to the outbox.

The answer is decided by the commit: an error after it (the broker down while relaying)
is logged and left to the outbox sweep, never turned into a failure of committed work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError

from collector.config import Settings, load_settings
from collector.db import UnitOfWork
from collector.errors import CollectorError, InternalError, InvalidArgument
from tasks import relay
from tasks.app import app

log = logging.getLogger(__name__)


def relay_after_commit(outbox_ids: list[int]) -> None:
    """Publish the rows a committed unit of work wrote; failures wait for the sweep."""
    if not outbox_ids:
        return
    try:
        relay.publish_rows(relay.publisher(app.conf.broker_url), outbox_ids)
    except Exception:  # noqa: BLE001 - committed work stays committed; the sweep retries
        log.warning("relay after commit failed; the outbox sweep will send %d row(s)",
                    len(outbox_ids), exc_info=True)


_settings: Settings | None = None


def worker_settings() -> Settings:
    """The settings of this worker process, read once (a worker's environment is fixed)."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def forget_settings() -> None:
    """Read the settings again at the next call (after a fork, or in tests)."""
    global _settings
    _settings = None


def run_in_unit_of_work(fn: Callable[..., Any], args: tuple | list = (),
                        kwargs: dict | None = None, readonly: bool = False) -> Any:
    """Run ``fn(session, *args)`` in one transaction; typed errors pass, others are wrapped.

    A connection found dead before the call wrote anything (a database restart, an idle
    connection dropped) is replaced and the call runs once more (a reader always: it cannot
    write)."""
    for attempt in (1, 2):
        uow = UnitOfWork(readonly=readonly, settings=worker_settings())
        try:
            with uow:
                result = fn(uow.session, *args, **(kwargs or {}))
            break
        except CollectorError:
            raise
        except DBAPIError as exc:
            if attempt == 1 and exc.connection_invalidated and (readonly or not uow.wrote):
                log.warning("database connection lost before %s wrote anything; running it "
                            "again", fn.__qualname__)
                continue
            if isinstance(exc, DataError):  # a value the database refused: bad input
                log.warning("value refused by the database in %s: %s", fn.__qualname__,
                            exc.orig)
                raise InvalidArgument(f"a value does not fit its column: {exc.orig}") from None
            log.exception("unexpected error in %s", fn.__qualname__)
            raise InternalError(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            log.exception("unexpected error in %s", fn.__qualname__)
            raise InternalError(f"{type(exc).__name__}: {exc}") from None
    relay_after_commit(uow.outbox_ids)
    return result
