"""Strategy registry: per kind, a name -> builder that validates a configuration entry's
options, and the option helpers and readers builders use.

A strategy is a frozen dataclass whose options are its fields made with ``option``;
registering the class under a name derives its builder (``from_options``)::

    @register("host_node", "Packed")
    @dataclass(frozen=True)
    class Packed(HostStrategy):
        spread: bool = option(boolean, default=False)

        def rank(self, candidates, request): ...

A builder may also be registered as a function ``builder(options, where) -> strategy``
(``where`` is the entry's key path, for error messages).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from functools import partial
from typing import Any, TypeVar

from collector import ids
from collector.errors import InvalidArgument, SchedulerConfigError

KINDS = ("host_node", "storage_node", "network", "ip_address", "mac_address")
Builder = Callable[[dict[str, Any], str], Any]
T = TypeVar("T")

_BUILDERS: dict[str, dict[str, Builder]] = {kind: {} for kind in KINDS}
# The modules whose import registers the built-in strategies.
_BUILTIN_MODULES = ("host_node", "piped_rules", "storage_node", "network", "ip_address",
                    "mac_address")


def register(kind: str, name: str) -> Callable[[T], T]:
    """Make ``name`` a strategy of ``kind``: a dataclass (its builder is ``from_options``)
    or a builder function."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown strategy kind {kind!r}")

    def decorate(target: T) -> T:
        _BUILDERS[kind][name] = builder_of(target)
        return target

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


# --- options as dataclass fields --------------------------------------------------------------

# reader(options, key, where, default) -> the field's value, or SchedulerConfigError
Reader = Callable[[dict[str, Any], str, str, Any], Any]
_OPTION = "collector.option"  # the field metadata key


@dataclass(frozen=True)
class Option:
    read: Reader
    key: str | None = None  # the option's name when it is not the field's
    first: bool = False  # read before the other options (its error is the one reported)


def option(read: Reader, *, default: Any = MISSING, default_factory: Any = MISSING,
           key: str | None = None, first: bool = False) -> Any:
    """A dataclass field read from the configuration option ``key`` (default: the field's
    name) by ``read``; its default is also the option's."""
    return field(default=default, default_factory=default_factory,
                 metadata={_OPTION: Option(read, key, first)})


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def from_options(cls: type[T], options: dict[str, Any], where: str,
                 entry_keys: Iterable[str] = ()) -> T:
    """``cls`` built from a configuration entry: each ``option`` field read from its
    option; any other key (but ``strategy`` and ``entry_keys``) is an unknown option."""
    read = [(f, f.metadata[_OPTION]) for f in fields(cls) if _OPTION in f.metadata]
    no_other_keys(options, [*entry_keys, *(opt.key or f.name for f, opt in read)], where)
    values = {f.name: opt.read(options, opt.key or f.name, where, _default(f))
              for f, opt in sorted(read, key=lambda item: not item[1].first)}
    return cls(**values)


def builder_of(target: Any, entry_keys: Iterable[str] = ()) -> Builder:
    """The builder of a registered dataclass (``from_options``); a function is one already."""
    if isinstance(target, type) and is_dataclass(target):
        return partial(from_options, target, entry_keys=tuple(entry_keys))
    return target


# --- option helpers: each error names the full key --------------------------------------------

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


# --- readers: the helpers as ``option`` reads them ---------------------------------------------

def one_of(*choices: str) -> Reader:
    """One of ``choices`` (default: the field's)."""
    return lambda options, key, where, default: choice(options, key, choices, default, where)


def boolean(options: dict[str, Any], key: str, where: str, default: bool) -> bool:
    return flag(options, key, default, where)


def required_text(options: dict[str, Any], key: str, where: str, default: object) -> str:
    return text(options, key, where, required=True) or ""


def strings(options: dict[str, Any], key: str, where: str, default: object) -> dict[str, str]:
    return string_map(options, key, where)


def positive_int(options: dict[str, Any], key: str, where: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SchedulerConfigError(f"{where}.{key}: must be an integer >= 1")
    return value


def id_of(prefix: str, required: bool = False) -> Reader:
    """A canonical id ``<prefix>-...`` (None when absent and not ``required``)."""
    return lambda options, key, where, default: canonical_id(options, key, prefix, where,
                                                             required=required)


def ids_of(prefix: str) -> Reader:
    """A table of strings whose values are canonical ids ``<prefix>-...``."""

    def read(options: dict[str, Any], key: str, where: str, default: object) -> dict[str, str]:
        table = string_map(options, key, where)
        for name, value in table.items():
            check_id(value, prefix, f"{where}.{key}.{name}")
        return table

    return read


def id_pairs(left: str | None, right: str) -> Reader:
    """``pairs`` whose right (and left, unless None) sides are ids of those prefixes."""

    def read(options: dict[str, Any], key: str, where: str, default: object
             ) -> tuple[tuple[str, str], ...]:
        found = pairs(options, key, where)
        for a, b in found:
            if left is not None:
                check_id(a, left, f"{where}.{key}")
            check_id(b, right, f"{where}.{key}")
        return found

    return read
