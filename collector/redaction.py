"""What task arguments look like where people watch: Flower, worker logs, task events.

Celery shows a task's arguments as ``argsrepr`` / ``kwargsrepr``. ``masked_repr`` gives that
text with the value of every sensitive key (``encrypted_password``, ``password``,
``secret``, ``token``, ``private_key``, ...) replaced, at any depth:

    masked_repr(["i-abc12345", {"encrypted_password": "c2VjcmV0"}])
    -> "['i-abc12345', {'encrypted_password': '********'}]"

The client and the outbox relay send it with every task they publish, and the Collector's
workers recompute it from the arguments they receive, so a message from any other client
is shown masked too. Nothing here changes the arguments themselves.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MASK = "********"
# A key is sensitive when one of these words is part of its name (case-insensitive), unless
# it names a time (``password_will_be_deleted_at``).
SENSITIVE_KEY = re.compile(r"passw|secret|token|private_key|credential|api_key",
                           re.IGNORECASE)
TIME_KEY = re.compile(r"_at$", re.IGNORECASE)
REPR_LIMIT = 1024  # longer reprs are cut (Celery's own saferepr cuts them too)


def is_sensitive(key: object) -> bool:
    return isinstance(key, str) and SENSITIVE_KEY.search(key) is not None \
        and TIME_KEY.search(key) is None


def masked(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with the values of sensitive keys replaced by ``MASK``."""
    if depth > 64:
        return "..."
    if isinstance(value, dict):
        return {key: MASK if is_sensitive(key) else masked(item, depth + 1)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(item, depth + 1) for item in value]
    return value


def _bounded_repr() -> reprlib.Repr:
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxdict, shown.maxlist, shown.maxtuple = 8, 64, 64, 64
    shown.maxstring = shown.maxother = shown.maxlong = 256
    return shown


_REPR = _bounded_repr()


def masked_repr(value: Any) -> str:
    """``repr`` of ``value`` with sensitive values masked, at most ``REPR_LIMIT`` characters
    (long strings, deep or long containers are cut, so a huge argument costs little)."""
    text = _REPR.repr(masked(value))
    return text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT - 3] + "..."
