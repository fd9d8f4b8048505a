"""Signed task messages: who sent a message, in a header the Collector checks.

Every message a Collector task runs from carries the header ``collector_auth``:

    v1 <principal> <generation> <signed_at> <hmac>

- ``principal``: who signs: a node id (``hva.demo1``), ``collector`` (the Collector's own
  roles) or ``operator`` (the CLI, Flower, an API front end);
- ``generation``: which of the principal's keys (``collector credentials issue`` makes a new
  one and ends the one before);
- ``signed_at``: Unix seconds when it was signed;
- ``hmac``: HMAC-SHA256, in hex, of ``canonical(...)`` under the principal's key.

What is signed is the task's name, the message id, the principal, the generation, the time
and the arguments (canonical JSON): a signature cannot be moved to another task, another
message id or other arguments. A principal's key is derived from the Collector's signing
secret (COLLECTOR_SIGNING_SECRET), ``derive_key``, so the Collector checks any sender
without a table of keys, and a node holds only its own key.

HMAC rather than ``celery.security``: that serializer signs the message body only (a signed
body could be replayed under another task name), is one key for a whole app, cannot tell
the task who signed, and costs an RSA signature per message.

Standard library only: an agent may import this module with the base install.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

HEADER = "collector_auth"
VERSION = "v1"
COLLECTOR = "collector"  # the Collector's own roles
OPERATOR = "operator"  # the CLI, Flower, an API front end
HVA, STA, NATBOX = NODE_KINDS = ("hva", "sta", "natbox")  # a node id is ``<kind>.<name>``
# No ":" nor glob characters: a node's Redis key patterns end with its id (workers.broker_acl).
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes "²", "١")


class BadSignature(ValueError):
    """A ``collector_auth`` header that does not parse."""


def node_kind(principal: str) -> str | None:
    """``hva.demo1`` -> ``hva``; None for a principal that is not a node's."""
    kind, dot, name = principal.partition(".")
    return kind if dot and name and kind in NODE_KINDS else None


def valid_principal(principal: str) -> bool:
    """Whether ``principal`` can sign: ``collector``, ``operator`` or a node id."""
    return isinstance(principal, str) and bool(_PRINCIPAL.fullmatch(principal)) and (
        principal in (COLLECTOR, OPERATOR) or node_kind(principal) is not None)


def derive_key(secret: str, principal: str, generation: int) -> bytes:
    """The signing key of ``principal``'s key number ``generation``."""
    label = f"collector-signing-key\x00{principal}\x00{generation}".encode()
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def canonical(task: str, task_id: str, principal: str, generation: int, signed_at: int,
              args: Any, kwargs: Any) -> bytes:
    """The bytes signed: JSON with sorted keys and no spaces (tuples are lists)."""
    return json.dumps([task, task_id, principal, generation, signed_at, args, kwargs],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def mac(key: bytes, task: str, task_id: str, principal: str, generation: int,
        signed_at: int, args: Any, kwargs: Any) -> str:
    """The HMAC-SHA256, in hex, of ``canonical(...)`` under ``key``."""
    return hmac.new(key, canonical(task, task_id, principal, generation, signed_at, args,
                                   kwargs), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Signature:
    """A parsed ``collector_auth`` header."""

    principal: str
    generation: int
    signed_at: int
    mac: str

    def matches(self, key: bytes, task: str, task_id: str, args: Any, kwargs: Any) -> bool:
        expected = mac(key, task, task_id, self.principal, self.generation, self.signed_at,
                       args, kwargs)
        return hmac.compare_digest(expected, self.mac)


def parse(header: Any) -> Signature:
    """The signature in a ``collector_auth`` header; BadSignature when malformed."""
    if not isinstance(header, str):
        raise BadSignature("the message is not signed (no collector_auth header)")
    parts = header.split(" ")
    if len(parts) != 5 or parts[0] != VERSION:
        raise BadSignature("the collector_auth header is not 'v1 PRINCIPAL GENERATION TIME "
                           "HMAC'")
    _, principal, generation, signed_at, mac = parts
    if not valid_principal(principal) or not _DIGITS.fullmatch(generation) or \
            not _DIGITS.fullmatch(signed_at) or not re.fullmatch(r"[0-9a-f]{64}", mac):
        raise BadSignature("the collector_auth header is malformed")
    return Signature(principal, int(generation), int(signed_at), mac)


@dataclass(frozen=True)
class Credential:
    """What a process signs with: its principal, the key's generation and the key."""

    principal: str
    generation: int
    key: bytes

    def sign(self, task: str, task_id: str, args: Any, kwargs: Any) -> str:
        """The ``collector_auth`` header for one message."""
        signed_at = int(time.time())
        digest = mac(self.key, task, task_id, self.principal, self.generation, signed_at,
                     args, kwargs)
        return f"{VERSION} {self.principal} {self.generation} {signed_at} {digest}"

    @classmethod
    def from_secret(cls, secret: str, principal: str, generation: int = 0) -> Credential:
        """The credential of ``principal`` derived from the Collector's signing secret."""
        return cls(principal, generation, derive_key(secret, principal, generation))

    @classmethod
    def from_node_key(cls, node_id: str, node_key: str) -> Credential:
        """A node's credential from what ``collector credentials issue`` printed:
        COLLECTOR_NODE_ID and COLLECTOR_NODE_KEY (``<generation>:<hex key>``)."""
        generation, sep, key = node_key.partition(":")
        if not sep or not _DIGITS.fullmatch(generation) or \
                not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError("COLLECTOR_NODE_KEY is not '<generation>:<64 hex digits>'")
        if node_kind(node_id) is None:
            raise ValueError(f"COLLECTOR_NODE_ID={node_id!r} is not a node id "
                             f"({', '.join(k + '.<name>' for k in NODE_KINDS)})")
        return cls(node_id, int(generation), bytes.fromhex(key))

    def node_key(self) -> str:
        """The COLLECTOR_NODE_KEY value of this credential."""
        return f"{self.generation}:{self.key.hex()}"
