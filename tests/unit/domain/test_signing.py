"""Signed task messages (``collector.signing``): what a signature binds, which headers
parse, and what a node's key looks like. No server: the standard library alone."""

from __future__ import annotations

import dataclasses
import time

import pytest

from collector.signing import (
    BadSignature,
    Credential,
    Signature,
    derive_key,
    node_kind,
    parse,
    valid_principal,
)

SECRET = "the-collectors-signing-secret"
TASK, TASK_ID = "hva-collector.update_instance", "3f0e6c2a-message-id"
ARGS, KWARGS = ["i-aaaaaaaa", {"state": "running"}], {"note": "x"}
MAC = "0" * 64


def _signed(principal: str = "hva.a", generation: int = 2) -> tuple[Credential, Signature]:
    credential = Credential.from_secret(SECRET, principal, generation)
    return credential, parse(credential.sign(TASK, TASK_ID, ARGS, KWARGS))


def test_a_signature_verifies_with_the_signers_key():
    credential, signature = _signed()
    assert (signature.principal, signature.generation) == ("hva.a", 2)
    assert abs(signature.signed_at - time.time()) < 60
    assert signature.matches(credential.key, TASK, TASK_ID, ARGS, KWARGS)
    # The Collector derives the same key from its secret: no table of keys.
    assert signature.matches(derive_key(SECRET, "hva.a", 2), TASK, TASK_ID, ARGS, KWARGS)


@pytest.mark.parametrize(("task", "task_id", "args", "kwargs"), [
    ("hva-collector.finalize_instance", TASK_ID, ARGS, KWARGS),
    (TASK, "another-message-id", ARGS, KWARGS),
    (TASK, TASK_ID, ["i-bbbbbbbb", {"state": "running"}], KWARGS),
    (TASK, TASK_ID, ["i-aaaaaaaa", {"state": "terminated"}], KWARGS),
    (TASK, TASK_ID, ARGS, {"note": "y"}),
    (TASK, TASK_ID, ARGS, {}),
], ids=["task-name", "task-id", "args", "nested-arg", "kwargs", "kwargs-dropped"])
def test_a_signature_cannot_be_moved_to_another_message(task, task_id, args, kwargs):
    credential, signature = _signed()
    assert not signature.matches(credential.key, task, task_id, args, kwargs)


def test_a_signature_does_not_verify_for_another_principal():
    credential, signature = _signed("hva.a")
    as_b = parse(credential.sign(TASK, TASK_ID, ARGS, KWARGS).replace(" hva.a ", " hva.b "))
    assert as_b.principal == "hva.b"
    assert not as_b.matches(derive_key(SECRET, "hva.b", 2), TASK, TASK_ID, ARGS, KWARGS)
    assert not as_b.matches(credential.key, TASK, TASK_ID, ARGS, KWARGS)
    # The principal is inside the MAC, not only in the key.
    assert not dataclasses.replace(signature, principal="hva.b").matches(
        credential.key, TASK, TASK_ID, ARGS, KWARGS)


def test_a_signature_does_not_verify_for_another_generation():
    credential, signature = _signed(generation=2)
    for generation in (1, 3):
        moved = dataclasses.replace(signature, generation=generation)
        assert not moved.matches(credential.key, TASK, TASK_ID, ARGS, KWARGS)
        assert not moved.matches(derive_key(SECRET, "hva.a", generation), TASK, TASK_ID,
                                 ARGS, KWARGS)
    assert derive_key(SECRET, "hva.a", 1) != derive_key(SECRET, "hva.a", 2)


def test_a_signature_does_not_verify_at_another_time():
    credential, signature = _signed()
    later = dataclasses.replace(signature, signed_at=signature.signed_at + 3600)
    assert not later.matches(credential.key, TASK, TASK_ID, ARGS, KWARGS)


def test_a_signature_does_not_verify_under_another_secrets_key():
    _credential, signature = _signed()
    assert not signature.matches(derive_key("another-secret", "hva.a", 2), TASK, TASK_ID,
                                 ARGS, KWARGS)
    assert derive_key("another-secret", "hva.a", 2) != derive_key(SECRET, "hva.a", 2)


def test_argument_tuples_and_lists_sign_alike_and_key_order_does_not_matter():
    """What the broker delivers is JSON: a tuple sent arrives as a list, a dict in any
    key order."""
    credential = Credential.from_secret(SECRET, "sta.s", 1)
    signature = parse(credential.sign(TASK, TASK_ID, ("vol-aaaaaaaa", ("a", 1)),
                                      {"b": 2, "a": (1, 2)}))
    assert signature.matches(credential.key, TASK, TASK_ID, ["vol-aaaaaaaa", ["a", 1]],
                             {"a": [1, 2], "b": 2})


def test_the_header_is_v1_principal_generation_time_mac():
    header = Credential.from_secret(SECRET, "operator").sign(TASK, TASK_ID, [], {})
    version, principal, generation, signed_at, mac = header.split(" ")
    assert (version, principal, generation) == ("v1", "operator", "0")
    assert signed_at.isdigit() and len(mac) == 64
    assert parse(header) == Signature("operator", 0, int(signed_at), mac)


@pytest.mark.parametrize("header", [
    None,
    b"v1 hva.a 1 1700000000 " + MAC.encode(),
    "",
    f"v1 hva.a 1 1700000000 {MAC} extra",
    "v1 hva.a 1 1700000000",
    f"v1 hva.a  1 1700000000 {MAC}",
    f"v2 hva.a 1 1700000000 {MAC}",
    f"V1 hva.a 1 1700000000 {MAC}",
    f"v1 hva.a 1 1700000000 {'g' * 64}",
    f"v1 hva.a 1 1700000000 {'A' * 64}",
    f"v1 hva.a 1 1700000000 {MAC[:-1]}",
    f"v1 hva.a 1 1700000000 {MAC}0",
    f"v1 api 1 1700000000 {MAC}",
    f"v1 hva. 1 1700000000 {MAC}",
    f"v1 garbage 1 1700000000 {MAC}",
    f"v1 hva.a -1 1700000000 {MAC}",
    f"v1 hva.a one 1700000000 {MAC}",
    f"v1 hva.a 1.5 1700000000 {MAC}",
    f"v1 hva.a \u00b2 1700000000 {MAC}",
    f"v1 hva.a 1 -1700000000 {MAC}",
    f"v1 hva.a 1 now {MAC}",
], ids=["unsigned", "bytes", "empty", "six-fields", "four-fields", "double-space",
        "version-2", "version-case", "non-hex-mac", "upper-hex-mac", "short-mac", "long-mac",
        "principal-api", "principal-empty-name", "principal-garbage", "negative-generation",
        "word-generation", "fraction-generation", "superscript-generation",
        "negative-time", "word-time"])
def test_a_malformed_header_is_a_bad_signature(header):
    with pytest.raises(BadSignature):
        parse(header)


def test_a_node_key_round_trips():
    credential = Credential.from_secret(SECRET, "sta.s", 7)
    node_key = credential.node_key()
    assert node_key == f"7:{derive_key(SECRET, 'sta.s', 7).hex()}"
    assert Credential.from_node_key("sta.s", node_key) == credential


@pytest.mark.parametrize(("node_id", "node_key"), [
    ("hva.a", "abc"),
    ("hva.a", "1"),
    ("hva.a", f"{MAC}"),
    ("hva.a", f"x:{MAC}"),
    ("hva.a", f"-1:{MAC}"),
    ("hva.a", f":{MAC}"),
    ("hva.a", f"1:{MAC[:-2]}"),
    ("hva.a", f"1:{'A' * 64}"),
    ("hva.a", f"1:{'z' * 64}"),
    ("hva.a", f"1:{MAC} "),
    ("operator", f"1:{MAC}"),
    ("collector", f"1:{MAC}"),
    ("hva.", f"1:{MAC}"),
    ("garbage", f"1:{MAC}"),
], ids=["no-colon", "generation-only", "key-only", "word-generation", "negative-generation",
        "empty-generation", "short-key", "upper-hex-key", "non-hex-key", "trailing-space",
        "operator", "collector", "empty-name", "garbage-node"])
def test_a_bad_node_key_or_node_id_is_refused(node_id, node_key):
    with pytest.raises(ValueError, match="COLLECTOR_NODE_"):
        Credential.from_node_key(node_id, node_key)


@pytest.mark.parametrize(("principal", "kind", "valid"), [
    ("hva.a", "hva", True),
    ("hva.demo1", "hva", True),
    ("sta.s", "sta", True),
    ("natbox.n1", "natbox", True),
    ("hva.a.b", "hva", True),
    ("collector", None, True),
    ("operator", None, True),
    ("hva", None, False),
    ("hva.", None, False),
    (".a", None, False),
    ("api", None, False),
    ("bksta.b1", None, False),
    ("HVA.a", None, False),
    ("garbage", None, False),
    ("", None, False),
], ids=lambda value: repr(value))
def test_node_kind_and_valid_principal(principal, kind, valid):
    assert node_kind(principal) == kind
    assert valid_principal(principal) is valid


@pytest.mark.parametrize("principal", [
    "hva.a b", "hva.a\tb", "hva.a/b", "hva.a\n", "hva." + "x" * 80, "Operator",
], ids=["space", "tab", "slash", "trailing-newline", "too-long", "operator-case"])
def test_a_principal_with_characters_outside_the_set_is_invalid(principal):
    """Whatever its kind, a principal that could not appear in a header (or that breaks
    the 80-character node id column) cannot sign."""
    assert not valid_principal(principal)
