"""Strategy registry: per kind, a name -> builder that validates its options.

A builder takes the option table of one configuration entry and the key path of that
entry (for error messages) and returns the strategy object. Part 2 strategies plug in by
registering a name::

    @register("host_node", "PipedRules")
    def _build(options: dict, where: str) -> HostStrategy: ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from collector import ids
from collector.errors import InvalidArgument, SchedulerConfigError

KINDS = ("host_node", "storage_node", "network", "ip_address", "mac_address")
Builder = Callable[[dict[str, Any], str], Any]

_BUILDERS: dict[str, dict[str, Builder]] = {kind: {} for kind in KINDS}
# The modules whose import registers the built-in strategies.
_BUILTIN_MODULES = ("host_node", "piped_rules", "storage_node", "network", "ip_address",
                    "mac_address")


def register(kind: str, name: str) -> Callable[[Builder], Builder]:
    if kind not in _BUILDERS:
        raise ValueError(f"unknown strategy kind {kind!r}")

    def decorate(builder: Builder) -> Builder:
        _BUILDERS[kind][name] = builder
        return builder

    return decorate


def names(kind: str) -> list[str]:
    load_builtins()
    return sorted(_BUILDERS[kind])


def build(kind: str, name: object, options: dict[str, Any], where: str) -> Any:
    """The strategy ``name`` of ``kind`` built from ``options``; one-line error otherwise."""
    load_builtins()
    if not isinstance(name, str) or name not in _BUILDERS[kind]:
        raise SchedulerConfigError(
            f"{where}: unknown {kind} strategy {name!r} (known: {', '.join(names(kind))})")
    return _BUILDERS[kind][name](options, where)


def build_entry(kind: str, entry: object, where: str) -> Any:
    """A strategy from its configuration entry: a name, or a table with ``strategy`` and
    the strategy's options."""
    if isinstance(entry, str):
        return build(kind, entry, {}, where)
    if isinstance(entry, dict):
        if "strategy" not in entry:
            raise SchedulerConfigError(f"{where}.strategy: required")
        return build(kind, entry["strategy"], dict(entry), where)
    raise SchedulerConfigError(f"{where}: must be a strategy name or a table")


def load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"collector.scheduling.strategies.{module}")


# Option helpers: each error names the full key.

def no_other_keys(options: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(options) - set(allowed) - {"strategy"})
    if extra:
        raise SchedulerConfigError(f"{where}.{extra[0]}: unknown option")


def choice(options: dict[str, Any], key: str, choices: tuple[str, ...], default: str,
           where: str) -> str:
    value = options.get(key, default)
    if value not in choices:
        quoted = " or ".join(f'"{c}"' for c in choices)
        raise SchedulerConfigError(f"{where}.{key}: must be {quoted}")
    return value


def text(options: dict[str, Any], key: str, where: str, default: str | None = None,
         required: bool = False) -> str | None:
    value = options.get(key, default)
    if value is None and required:
        raise SchedulerConfigError(f"{where}.{key}: required")
    if value is not None and (not isinstance(value, str) or not value):
        raise SchedulerConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def string_map(options: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = options.get(key, {})
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SchedulerConfigError(f"{where}.{key}: must be a table of strings")
    return dict(value)


def pairs(options: dict[str, Any], key: str, where: str) -> tuple[tuple[str, str], ...]:
    """The original's repeated ``pair a, b``: a table ``{a = "b", ...}`` or a list of
    two-string lists, in the order written (the order is the precedence)."""
    value = options.get(key, {})
    items = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(items, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2
            and all(isinstance(x, str) and x for x in p) for p in items):
        raise SchedulerConfigError(
            f"{where}.{key}: must be a table of strings or a list of [key, value] pairs")
    return tuple((a, b) for a, b in items)


def canonical_id(options: dict[str, Any], key: str, prefix: str, where: str,
                 required: bool = False) -> str | None:
    """An optional (or required) option holding a canonical id ``<prefix>-...``."""
    value = text(options, key, where, required=required)
    if value is not None:
        check_id(value, prefix, f"{where}.{key}")
    return value


def check_id(value: str, prefix: str, where: str) -> str:
    try:
        ids.raw_part(value, prefix)
    except InvalidArgument:
        raise SchedulerConfigError(f"{where}: must be an id {prefix}-..., got {value!r}") \
            from None
    return value


def flag(options: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise SchedulerConfigError(f"{where}.{key}: must be true or false")
    return value
