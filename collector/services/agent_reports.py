"""Applying an agent's report on a row it owns: volumes, snapshots, backup objects, images.

Every ``update_*`` that an agent calls runs the same sequence, in this order:

1. the payload's keys and JSON types are checked (``check_fields``), before any lookup;
2. the row is read with a row lock (``SELECT ... FOR UPDATE``), so concurrent reports on
   one row apply one after the other;
3. the caller's ``check`` sees the locked row and the payload (value rules; they apply to a
   deleted row too, so a bad report is refused whatever the row's state);
4. ``state: deleted`` soft-deletes the row once (a repeat is a no-op) and nothing else in
   that report applies;
5. a report on a row that is already in the terminal state changes nothing (a late report);
6. a ``state`` goes through the kind's state machine: unknown names are InvalidArgument,
   disallowed changes InvalidStateTransition, a resend of the current state a no-op;
7. the other fields are copied, through the caller's ``setters`` where a value needs more
   than ``setattr`` (a time to parse, an id to resolve, a device row to update).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from collector.fields import apply_deleted_report, check_fields
from collector.models.base import Taggable
from collector.states import check_transition

Row = TypeVar("Row", bound=Taggable)
Setter = Callable[[Session, Any, Any], None]
"""``setter(session, row, value)``: stores one payload field on the locked row."""

_NOT_COPIED = frozenset({"state", "deleted_at"})


def apply_agent_report(session: Session, model: type[Row], row_id: object,
                       data: dict[str, Any], *, kind: str,
                       fields: dict[str, tuple[type, ...]], transitions: dict[str, set[str]],
                       terminal: str = "deleted",
                       check: Callable[[Row, dict[str, Any]], None] | None = None,
                       setters: Mapping[str, Setter] | None = None) -> Row | None:
    """Apply ``data`` to the ``model`` row ``row_id`` as described in this module.

    ``kind`` names the row in error messages; ``fields`` are the keys an agent may send with
    their JSON types; ``transitions`` is the state machine and ``terminal`` the state that a
    deletion leaves (once there, a row takes no more reports). Returns the updated row, or
    None when the report was a deletion or came late, so that the caller's own follow-up
    rules run only after a report that was applied.
    """
    check_fields(kind, data, fields, model)
    row = model.by_cuuid(session, row_id, for_update=True)
    if check is not None:
        check(row, data)
    if apply_deleted_report(row, data):
        return None
    if row.state == terminal:
        return None
    if "state" in data and check_transition(kind, transitions, row.state, data["state"],
                                            terminal=terminal):
        row.state = data["state"]
    setters = setters or {}
    for key, value in data.items():
        if key in _NOT_COPIED:
            continue
        setter = setters.get(key)
        if setter is None:
            setattr(row, key, value)
        else:
            setter(session, row, value)
    return row
