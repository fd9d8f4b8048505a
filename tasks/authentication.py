"""Who sent a message: its signature checked before any Collector task runs from it.

``sender_of(message)`` proves the sender of a task message (``collector.signing``): the
header parses, the principal's key is the valid one (a node's generation is read from the
ledger of credentials at most ``GENERATION_TTL`` seconds old, so a revoked node is refused
within a second), and the HMAC over the task name, the message id and the arguments
matches. Anything else is ``Unauthorized``. ``caller_of(request)`` is the sender of the
running task, for the authorization of its arguments (``collector.services.authorization``).

COLLECTOR_REQUIRE_SIGNATURES=0 turns the check off (only to measure what it costs): every
message then runs as the operator's.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from collector.db import unit_of_work
from collector.errors import TransientError, Unauthorized
from collector.services import credentials
from collector.services.authorization import Caller
from collector.signing import HEADER as SIGNATURE_HEADER
from collector.signing import BadSignature, derive_key, node_kind, parse
from tasks.process_settings import worker_settings

GENERATION_TTL = 0.5  # seconds a node's valid key generation is trusted without a read
_generations: dict[str, tuple[int | None, float]] = {}


@lru_cache(maxsize=4096)
def _key(secret: str, principal: str, generation: int) -> bytes:
    return derive_key(secret, principal, generation)


def valid_generation(node_id: str) -> int | None:
    """The node's valid key generation (None: revoked or never issued), read again when
    older than GENERATION_TTL. The database out of reach: the last one read, if any."""
    now = time.monotonic()
    cached = _generations.get(node_id)
    if cached is not None and now - cached[1] < GENERATION_TTL:
        return cached[0]
    try:
        with unit_of_work(readonly=True) as session:
            generation = credentials.valid_generation(session, node_id)
    except Exception as exc:  # noqa: BLE001 - the database down: the last answer, or wait
        if cached is not None:
            return cached[0]
        raise TransientError("the sender's credentials cannot be checked now (the database "
                             "is out of reach); retry") from exc
    _generations[node_id] = (generation, now)
    return generation


def sender_of(message: Any) -> Caller:
    """The proven sender of a task message; Unauthorized when it is not proven."""
    headers = message.headers or {}
    try:
        signature = parse(headers.get(SIGNATURE_HEADER))
    except BadSignature as exc:
        raise Unauthorized(str(exc)) from None
    principal = signature.principal
    secret = worker_settings().signing_secret
    if not secret:
        raise Unauthorized("this worker has no signing secret (COLLECTOR_SIGNING_SECRET): it "
                           "cannot check any sender")
    if node_kind(principal) is not None:
        generation = valid_generation(principal)
        if generation is None:
            raise Unauthorized(f"{principal} has no valid credentials (revoked or never "
                               "issued)")
        if signature.generation != generation:
            raise Unauthorized(f"{principal} signed with key {signature.generation}, which "
                               f"was replaced (key {generation} is valid)")
    elif signature.generation != 0:
        raise Unauthorized(f"{principal} has no key {signature.generation}")
    args, kwargs, _embed = message.decode()
    if not signature.matches(_key(secret, principal, signature.generation),
                             headers.get("task"), headers.get("id"), args, kwargs):
        raise Unauthorized(f"the signature of {principal} does not match the message")
    return Caller(principal)


def claimed_sender(message: Any) -> str:
    """Who the message says it is from (for the log of a refusal), unchecked."""
    header = (message.headers or {}).get(SIGNATURE_HEADER)
    return header.split(" ")[1] if isinstance(header, str) and header.count(" ") == 4 \
        else "an unsigned sender"


def caller_of(request: Any) -> Caller | None:
    """The sender of the running task (proven before it ran); None for a call made in
    this process, or when signatures are not required."""
    if request is None or getattr(request, "called_directly", True) or \
            not worker_settings().require_signatures:
        return None
    try:  # Celery sets each header of the message as an attribute of the request
        return Caller(parse(getattr(request, SIGNATURE_HEADER, None)).principal)
    except BadSignature:
        return None
