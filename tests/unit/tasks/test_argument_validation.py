"""Arguments are checked against the domain function's signature before any work."""

from __future__ import annotations

from typing import Any

import pytest

from collector.errors import InvalidArgument
from tasks.registry import ArgumentValidator


def update_thing(session, _thing_id: str, data: dict[str, Any], force: bool = False) -> None:
    raise AssertionError("never called by the validator")


validate = ArgumentValidator(update_thing)


def test_valid_arguments_are_bound_in_order():
    bound = validate(("i-abc12345", {"state": "running"}), {})
    assert bound.args == ("i-abc12345", {"state": "running"})


@pytest.mark.parametrize(
    "args, kwargs, fragment",
    [
        ((), {}, "missing a required argument"),
        (("i-abc12345",), {}, "missing a required argument"),
        (("i-abc12345", {}, True, "extra"), {}, "too many positional"),
        (("i-abc12345", {}), {"bogus": 1}, "unexpected keyword"),
        ((42, {}), {}, "_thing_id"),
        (("i-abc12345", ["not", "a", "dict"]), {}, "data"),
        (("i-abc12345", {}, "yes"), {}, "force"),
    ],
)
def test_bad_arguments_are_invalid_argument(args, kwargs, fragment):
    with pytest.raises(InvalidArgument) as info:
        validate(args, kwargs)
    assert fragment in str(info.value)
    assert info.value.error_type == "InvalidArgument"


def test_a_function_without_session_first_cannot_be_exposed():
    def no_session(_thing_id: str) -> None: ...

    with pytest.raises(TypeError):
        ArgumentValidator(no_session)


# -- the wire rules: the same refusal whatever the database behind -----------------------

def store(session, _thing_id: str, data: Any = None) -> None:
    raise AssertionError("never called by the validator")


check = ArgumentValidator(store)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("data, fragment", [
    ("a\x00b", "NUL"),
    ({"k": ["ok", "x\x00"]}, "data.k[1]: contains a NUL"),
    ("\ud800", "lone surrogate"),
    (2 ** 63, "beyond 64 bits"),
    (-(2 ** 63) - 1, "beyond 64 bits"),
    ({"retry_max": 10 ** 30}, "data.retry_max: is an integer beyond 64 bits"),
    (float("nan"), "not a finite number"),
    ([float("inf")], "not a finite number"),
    (_nested(33), "deeper than 32"),
    (list(range(10_001)), "more than 10000 items"),
    ({"a\x00": 1}, "key that contains a NUL"),
])
def test_values_no_database_takes_alike_are_refused_anywhere(data, fragment):
    with pytest.raises(InvalidArgument) as info:
        check(("i-abc12345", data), {})
    assert fragment in str(info.value)


@pytest.mark.parametrize("data", [
    2 ** 63 - 1, -(2 ** 63), 1.5, True, None, "ünïcode ✓", _nested(31), list(range(10_000)),
    {"deep": {"ly": {"nested": [1, 2, {"ok": None}]}}},
])
def test_values_within_the_rules_pass(data):
    assert check(("i-abc12345", data), {}).args == ("i-abc12345", data)


def test_a_type_error_message_never_shows_a_secret():
    def counters(session, data: dict[str, int]) -> None: ...

    with pytest.raises(InvalidArgument) as info:
        ArgumentValidator(counters)(({"encrypted_password": "hunter2", "n": 1},), {})
    assert "data.encrypted_password" in str(info.value)
    assert "hunter2" not in str(info.value) and "********" in str(info.value)


def test_a_plain_function_is_checked_without_a_session():
    def handle(event_name: str, args: list, sender: str) -> None: ...

    plain = ArgumentValidator(handle, session_first=False)
    assert plain(("e", [], "s"), {}).args == ("e", [], "s")
    for args in [(), ("e", "not a list", "s"), ("e", [], "s", "extra")]:
        with pytest.raises(InvalidArgument):
            plain(args, {})
