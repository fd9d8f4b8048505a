"""Shared pieces of the answer documents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text


def taggable_hash(row: Any) -> dict[str, Any]:
    """The original's Taggable#to_hash: all columns, ``id`` int, ``uuid`` canonical,
    NULL text columns as ``""``."""
    out = row.column_values()
    out["uuid"] = row.canonical_uuid
    for column in row.__table__.columns:
        if isinstance(column.type, Text) and out.get(column.name) is None:
            out[column.name] = ""
    return out
