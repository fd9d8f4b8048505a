"""Events: one copy per subscribing role, competing consumers inside a role.

Every event lands on the ``events`` queue (bound to the topic exchange with ``#``). The
dispatcher task there writes, in one transaction, one outbox row per matching
subscription; each row becomes the handler task ``events.<role>.<handler>`` on the
role's durable queue ``events.<role>``. So a role sees an event once however many
workers it runs, and nothing is lost between the dispatcher and the handlers.

    @subscribe("alarm-collector", "hva/instance_terminated")
    def delete_instance_alarms(session, args, sender): ...

Handlers are domain functions ``(session, args: list, sender: str)``; they must tolerate a
repeat (a crash after commit can redeliver).

The dispatcher runs only from messages published to the events exchange (or found on its
own queue); a handler task only from its role's queue (``tasks.base``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from collector import messaging
from collector.client import EVENTS_EXCHANGE
from collector.topics import topic_matches
from tasks.app import app
from tasks.unit_of_work import run_in_unit_of_work

log = logging.getLogger(__name__)

Handler = Callable[[Session, list, str], Any]


@dataclass(frozen=True)
class Subscription:
    role: str
    event: str
    sender_pattern: str
    name: str
    handler: Handler

    @property
    def queue(self) -> str:
        return f"events.{self.role}"

    @property
    def task_name(self) -> str:
        return f"events.{self.role}.{self.name}"

    def matches(self, event: str, sender: str) -> bool:
        return topic_matches(f"{self.event}.{self.sender_pattern}", f"{event}.{sender}")


SUBSCRIPTIONS: list[Subscription] = []


def subscribe(role: str, event: str, sender_pattern: str = "#") -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``event`` from senders matching ``sender_pattern``."""

    def register(handler: Handler) -> Handler:
        sub = Subscription(role, event, sender_pattern, handler.__name__, handler)
        if any(s.task_name == sub.task_name for s in SUBSCRIPTIONS):
            raise ValueError(f"duplicate event handler {sub.task_name}")
        SUBSCRIPTIONS.append(sub)

        @app.task(name=sub.task_name, queue=sub.queue, typing=False)
        def handle(event_name: str, args: list, sender: str) -> Any:
            return run_in_unit_of_work(handler, (list(args), sender))

        return handler

    return register


def matching(event: str, sender: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.matches(event, sender)]


def dispatch(session: Session, event: str, args: list, sender: str) -> list[str]:
    """Fan one event out to the handler queue of every matching subscription."""
    sent = []
    for sub in matching(event, sender):
        messaging.tasks.send(session, sub.queue, sub.task_name, event, list(args), sender)
        sent.append(sub.task_name)
    return sent


@app.task(name=messaging.EVENT_TASK, queue="events", typing=False,
          topic_exchange=EVENTS_EXCHANGE.name)
def deliver(event: str, args: list, sender: str, published_at: str | None = None) -> list[str]:
    """The dispatcher: runs once per event on the ``events`` queue."""
    if not isinstance(event, str) or not isinstance(args, list) or not isinstance(sender, str):
        log.error("malformed event dropped: %r %r %r", event, args, sender)
        return []
    return run_in_unit_of_work(dispatch, (event, args, sender))
