"""A task's arguments, checked before it runs: InvalidArgument, never a raw Python error.

``ArgumentValidator(fn)`` checks a call against ``fn``'s signature (count, names), its type
hints (pydantic, strict: no coercion) and the wire rules below, which hold for every value
at any depth, whatever the type hint says (``Any`` included). They are what neither
database, nor JSON readers in other languages, can take the same way, so the answer to bad
input never depends on the database behind the Collector:

- a string holds no NUL character and no lone surrogate (PostgreSQL and UTF-8 refuse them;
  SQLite would keep them);
- an integer fits in signed 64 bits (SQLite's driver fails beyond; PostgreSQL refuses);
- a number is finite (no NaN or infinity: SQLite stores NaN as NULL);
- lists and objects nest at most ``MAX_DEPTH`` levels and hold at most ``MAX_ITEMS`` items
  (a query over more ids than a database takes parameters would fail on one of them only).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError

from collector.errors import InvalidArgument
from collector.redaction import masked

MAX_DEPTH = 32
MAX_ITEMS = 10_000
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def wire_problem(value: Any) -> tuple[str, str] | None:
    """``(where, what)`` for the first value breaking a wire rule, or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
        elif isinstance(item, bool) or item is None:
            problem = None
        elif isinstance(item, int):
            problem = None if INT64_MIN <= item <= INT64_MAX else \
                "is an integer beyond 64 bits"
        elif isinstance(item, float):
            problem = None if math.isfinite(item) else "is not a finite number"
        elif isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                return where, f"nests deeper than {MAX_DEPTH} levels"
            if len(item) > MAX_ITEMS:
                return where, f"holds more than {MAX_ITEMS} items"
            problem = None
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return where, "has a key that is not a string"
                    key_problem = _string_problem(key)
                    if key_problem:
                        return where, f"has a key that {key_problem}"
                    stack.append((child, f"{where}.{key}" if where else key, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            problem = f"is a {type(item).__name__}, not a JSON value"
        if problem:
            return where, problem
    return None


def _shown(value: Any) -> str:
    """The offending value for a message: sensitive keys masked, cut short."""
    return f"{masked(value)!r:.80}"


class ArgumentValidator:
    """Checks call arguments against ``fn``'s signature; with ``session_first`` (a domain
    function), its first parameter must be ``session`` and is not an argument."""

    def __init__(self, fn: Callable[..., Any], session_first: bool = True) -> None:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if session_first:
            if not params or params[0].name != "session":
                raise TypeError(f"{fn.__qualname__} must take `session` as its first parameter")
            params = params[1:]
        self.signature = signature.replace(parameters=params)
        hints = get_type_hints(fn)
        self.adapters: dict[str, TypeAdapter] = {
            p.name: TypeAdapter(hints[p.name]) for p in params
            if p.name in hints and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def __call__(self, args: tuple | list, kwargs: dict) -> inspect.BoundArguments:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"bad arguments: {exc}") from None
        for name, value in bound.arguments.items():
            problem = wire_problem(value)
            if problem:
                where, what = problem
                path = f"{name}.{where}" if where and not where.startswith("[") else \
                    f"{name}{where}"
                raise InvalidArgument(f"invalid argument {path}: {what}")
            adapter = self.adapters.get(name)
            if adapter is None:
                continue
            try:
                bound.arguments[name] = adapter.validate_python(value, strict=True)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "")
                detail = f"{name}{'.' + where if where else ''}: {first['msg']}"
                raise InvalidArgument(f"invalid argument {detail} (got {_shown(value)})") \
                    from None
        return bound
