"""Sensitive argument values are masked wherever tasks are shown; nothing else changes."""

from collector.redaction import MASK, is_sensitive, masked, masked_repr


def test_sensitive_keys_are_masked_at_any_depth_and_times_are_not():
    value = ["i-abc12345", {"encrypted_password": "c2Vj", "password_will_be_deleted_at": "t",
                            "nested": [{"api_key": "k", "Secret": "s", "token": "t"}],
                            "state": "running"}]
    shown = masked(value)
    assert shown == ["i-abc12345", {"encrypted_password": MASK,
                                    "password_will_be_deleted_at": "t",
                                    "nested": [{"api_key": MASK, "Secret": MASK,
                                                "token": MASK}],
                                    "state": "running"}]
    assert value[1]["encrypted_password"] == "c2Vj"  # the arguments themselves are untouched
    assert "c2Vj" not in masked_repr(value)


def test_the_repr_stays_short_whatever_the_argument():
    assert len(masked_repr(["x" * 10 ** 6, list(range(10 ** 5))])) <= 1024
    assert masked_repr([[[[[[[[[[[1]]]]]]]]]]])  # deep: cut, not an error


def test_what_counts_as_sensitive():
    assert all(map(is_sensitive, ["password", "encrypted_password", "private_key",
                                  "ssh_private_key", "credentials", "client_secret"]))
    assert not any(map(is_sensitive, ["state", "password_will_be_deleted_at", "size", 42]))
