"""Checks the tests of every tier share: waiting for something to happen, and calls that
must each raise their typed error.

- ``wait_for(predicate, what, timeout, every, ignore)``: ``predicate()``'s first true value,
  polled every ``every`` s; AssertionError naming ``what`` after ``timeout`` s.
- ``raises_each(session, cases)``: each ``(error, call, *args)`` raises ``error``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60, every: float = 0.3,
             ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """``predicate()``'s first true value, asked every ``every`` s; an AssertionError naming
    ``what`` once ``timeout`` s have passed. An exception in ``ignore`` counts as false (a
    server the test stopped on purpose)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def raises_each(session: Any, cases: Iterable[tuple[Any, ...]]) -> None:
    """For each ``(error, call, *args)``: ``call(session, *args)`` raises ``error``."""
    for error, call, *args in cases:
        with pytest.raises(error):
            call(session, *args)
