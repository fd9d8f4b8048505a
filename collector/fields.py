"""Strict checking of update payloads: known keys only, each with its JSON types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, Numeric, String
from sqlalchemy import inspect as sa_inspect

from collector.errors import InvalidArgument
from collector.redaction import MASK, is_sensitive
from collector.timeutil import parse_time

NULL = type(None)


def _shown(key: str, value: Any) -> str:
    """The offending value in a message: a sensitive one never (``collector.redaction``)."""
    return MASK if is_sensitive(key) else f"{value!r:.60}"


def _wrong_type(value: Any, types: tuple[type, ...]) -> bool:
    return not isinstance(value, types) or (isinstance(value, bool) and bool not in types)


def check_fields(kind: str, data: dict[str, Any], allowed: dict[str, tuple[type, ...]],
                 model: type | None = None) -> None:
    """InvalidArgument for an empty payload, an unknown key, a value of the wrong type or,
    given the ``model``, a value its column cannot hold."""
    if not data:
        raise InvalidArgument("data must name at least one field")
    for key, value in data.items():
        types = allowed.get(key)
        if types is None:
            raise InvalidArgument(f"unknown {kind} field: {key!r}")
        if _wrong_type(value, types):
            raise InvalidArgument(f"{kind} field {key!r} has the wrong type: {_shown(key, value)}")
    if model is not None:
        check_fits(kind, model, data)


def _misfit(column: Any, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``column`` as it is, or None.

    Checked here because SQLite stores an over-long string or a 64-bit number in any column
    while PostgreSQL refuses it: both backends must answer bad input the same way.
    """
    ctype = column.type
    if isinstance(ctype, String) and isinstance(value, str):
        if ctype.length and len(value) > ctype.length:
            return f"is longer than {ctype.length} characters"
    elif isinstance(ctype, Integer) and isinstance(value, int) and not isinstance(value, bool):
        bits = 63 if isinstance(ctype, BigInteger) else 31
        if not -(2 ** bits) <= value < 2 ** bits:
            return "is out of range"
    return None


def check_fits(kind: str, model: type, data: dict[str, Any]) -> None:
    """InvalidArgument for a value too long or too large for the model's column."""
    columns = model.__table__.c
    for key, value in data.items():
        column = columns.get(key)
        problem = _misfit(column, value) if column is not None else None
        if problem:
            raise InvalidArgument(f"{kind} field {key!r} {problem}")


# Per mapper: the columns a value can be too long or too large for (``_misfit``), by
# attribute key; the other columns are not looked at on a flush.
_LIMITED: dict[Any, dict[str, Any]] = {}


def _limited_columns(mapper: Any) -> dict[str, Any]:
    limited = _LIMITED.get(mapper)
    if limited is None:
        limited = _LIMITED[mapper] = {
            key: column for key, column in mapper.columns.items()
            if isinstance(column.type, Integer)
            or (isinstance(column.type, String) and column.type.length)}
    return limited


def check_flushed_rows(session: Any, _flush_context: Any = None, _instances: Any = None) -> None:
    """``before_flush``: InvalidArgument for a new or changed value its column cannot hold.

    PostgreSQL refuses an over-long string or an integer beyond the column's range; SQLite
    would store it. Checked here for every write, so both answer the same.
    """
    for row in (*session.new, *session.dirty):
        state = sa_inspect(row)
        values = state.dict
        _check_values(_limited_columns(state.mapper), values,
                      values if state.key is None else state.committed_state)


def check_new_rows(model: Any, rows: Iterable[dict[str, Any]]) -> None:
    """``check_flushed_rows`` for rows of ``model`` written without the ORM (attribute keys
    and values)."""
    limited = _limited_columns(sa_inspect(model))
    for values in rows:
        _check_values(limited, values, values)


def _check_values(limited: dict[str, Any], values: dict[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        column = limited.get(key)
        if column is None:
            continue
        problem = _misfit(column, values.get(key))
        if problem:
            raise InvalidArgument(f"{column.table.name}.{column.name} {problem}")


def _column_types(column: Any) -> tuple[type, ...]:
    ctype = column.type
    for sql_type, types in ((Boolean, (bool,)), (Integer, (int,)), (Float, (int, float)),
                            (Numeric, (int, float)), (String, (str,)), (JSON, (dict, list))):
        if isinstance(ctype, sql_type):
            return (*types, NULL)
    return (object,)


def cloned_fields(kind: str, model: type, data: dict[str, Any],
                  keys: Iterable[str]) -> dict[str, Any]:
    """The ``keys`` of an agent's ``data`` that become columns of a new ``model`` row,
    each checked against its column (type, length, range); other keys are ignored."""
    values = {key: data[key] for key in keys if key in data}
    columns = model.__table__.c
    for key, value in values.items():
        if value is None and not columns[key].nullable:
            raise InvalidArgument(f"{kind} field {key!r} cannot be null")
        if _wrong_type(value, _column_types(columns[key])):
            raise InvalidArgument(f"{kind} field {key!r} has the wrong type: {_shown(key, value)}")
    check_fits(kind, model, values)
    return values


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
