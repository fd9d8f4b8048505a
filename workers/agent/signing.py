"""Sign every task message an app publishes (``collector.signing``).

``sign_messages(app, credential)`` wraps the app's message sender, so whatever publishes
through the app carries the ``collector_auth`` header: calls, casts, events, a job's
``link`` / ``link_error`` callbacks sent by a worker of the app, a task's retry. A plain
Celery agent that does not use this library adds the same header in a
``before_task_publish`` handler (docs/reference.md, "Node identity";
tests/support/plain_agent.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from celery import Celery
from kombu import Exchange
from kombu.exceptions import EncodeError

from collector.signing import HEADER, Credential, node_kind


def signed(send: Callable[..., Any], credential: Credential) -> Callable[..., Any]:
    """Celery's ``send_task_message`` ``send``, adding the signature of each message. A
    node declares no queue (its broker user may not write the Collector's bindings, which
    the Collector and the operator declare); an exchange, which kombu keeps in memory, it
    does (a topic exchange unknown to the channel would route as a direct one)."""
    declares = node_kind(credential.principal) is None

    def send_signed(producer: Any, name: str, message: Any, *args: Any, **kwargs: Any) -> Any:
        headers, _properties, body, _sent_event = message
        try:
            headers[HEADER] = credential.sign(name, headers["id"], body[0], body[1])
        except (TypeError, ValueError) as exc:  # not JSON: kombu would refuse it as well
            raise EncodeError(exc) from exc
        if not declares:  # exchanges only: their declaration writes nothing in Redis
            kwargs["declare"] = [entity for entity in kwargs.get("declare") or ()
                                 if isinstance(entity, Exchange)]
        return send(producer, name, message, *args, **kwargs)

    return send_signed


class SignedSender:
    """Mixed into an app's AMQP class by ``sign_messages``: Celery's message sender, built at
    its first use from the app's configuration as it is then, signing each message."""

    collector_credential: Credential

    @cached_property
    def send_task_message(self) -> Callable[..., Any]:
        return signed(self._create_task_sender(), self.collector_credential)  # type: ignore[attr-defined]


def sign_messages(app: Celery, credential: Credential | None) -> Celery:
    """Make every task message ``app`` publishes signed by ``credential`` (None: unsigned)."""
    if credential is None:
        return app
    amqp = app.amqp
    amqp.__dict__.pop("send_task_message", None)
    amqp.__class__ = type("SignedAMQP", (SignedSender, type(amqp)), {})
    amqp.collector_credential = credential
    return app


def signed_by(app: Celery) -> str | None:
    """The principal ``app``'s messages are signed as; None when they are not signed."""
    credential = getattr(app.amqp, "collector_credential", None)
    return credential.principal if credential else None
