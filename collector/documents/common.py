"""Shared pieces of the answer documents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text

from collector.models.base import Base


def taggable_hash(row: Any) -> dict[str, Any]:
    """The original's Taggable#to_hash: all columns, ``id`` int, ``uuid`` canonical,
    NULL text columns as ``""``."""
    out = row.column_values()
    out["uuid"] = row.canonical_uuid
    for column in row.__table__.columns:
        if isinstance(column.type, Text) and out.get(column.name) is None:
            out[column.name] = ""
    return out


def labels_of(row: Any, labels_by_uuid: dict[str, list] | None) -> list[dict[str, Any]]:
    if not labels_by_uuid:
        return []
    return [label.to_hash() for label in labels_by_uuid.get(row.canonical_uuid, [])]


def node_status(node_state: Any | None) -> str:
    """Agent status: the node_states row's state, or ``offline`` when there is none."""
    return node_state.state if node_state is not None else "offline"


__all__ = ["taggable_hash", "labels_of", "node_status", "Base"]
