"""Strict checking of update payloads: known keys only, each with its JSON types."""

from __future__ import annotations

from typing import Any

from collector.errors import InvalidArgument
from collector.timeutil import parse_time

NULL = type(None)


def check_fields(kind: str, data: dict[str, Any], allowed: dict[str, tuple[type, ...]]) -> None:
    """InvalidArgument for an empty payload, an unknown key or a value of the wrong type."""
    if not data:
        raise InvalidArgument("data must name at least one field")
    for key, value in data.items():
        types = allowed.get(key)
        if types is None:
            raise InvalidArgument(f"unknown {kind} field: {key!r}")
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InvalidArgument(f"{kind} field {key!r} has the wrong type: {value!r:.60}")


def apply_deleted_report(row: Any, data: dict[str, Any]) -> bool:
    """An agent's ``{"state": "deleted"[, "deleted_at": t]}``: soft-delete once.

    True when the report was a deletion (nothing else in it applies). ``deleted_at``
    without ``state: deleted`` is refused.
    """
    if data.get("state") != "deleted":
        if "deleted_at" in data:
            raise InvalidArgument("deleted_at is only accepted with state 'deleted'")
        return False
    if row.deleted_at is None:
        row.destroy(parse_time(data.get("deleted_at"), "deleted_at"))
    return True
