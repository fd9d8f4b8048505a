"""Arguments are checked against the domain function's signature before any work."""

from __future__ import annotations

from typing import Any

import pytest

from collector.errors import InvalidArgument
from tasks.registry import ArgumentValidator


def update_thing(session, thing_id: str, data: dict[str, Any], force: bool = False) -> None:
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
        ((42, {}), {}, "thing_id"),
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
    def no_session(thing_id: str) -> None: ...

    with pytest.raises(TypeError):
        ArgumentValidator(no_session)
