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

Nothing is dropped when the dispatcher or a handler fails (Celery acknowledges a failed
task, even with ``acks_late``): a transient database error is retried with exponential
backoff (1, 2, 4 ... s, at most COLLECTOR_EVENT_RETRY_BACKOFF_MAX) up to
COLLECTOR_EVENT_RETRIES times; what still fails, and any other error at once, is parked in
the ``dead_letters`` table (``collector dead-letters list|replay``). If the database is
too down to take the dead letter, the message stays in the broker, retried at the longest
backoff until it can be handled or parked.

The dispatcher runs only from messages published to the events exchange (or found on its
own queue); a handler task only from its role's queue (``tasks.base``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from collector import wire
from collector.config import load_settings
from collector.db import outbox
from collector.errors import CollectorError, InvalidArgument, TransientError
from collector.services import dead_letters
from collector.topics import topic_matches
from tasks.app import app
from tasks.execution import run_in_unit_of_work

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
        return wire.event_queue(self.role)

    @property
    def task_name(self) -> str:
        return wire.event_handler_task(self.role, self.name)

    def matches(self, event: str, sender: str) -> bool:
        return topic_matches(f"{self.event}.{self.sender_pattern}", f"{event}.{sender}")


SUBSCRIPTIONS: list[Subscription] = []


def subscribe(role: str, event: str, sender_pattern: str = "#") -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``event`` from senders matching ``sender_pattern``."""

    if role not in wire.EVENT_SUBSCRIBERS:
        raise ValueError(f"{role!r} is not an event subscriber of collector.wire")

    def register(handler: Handler) -> Handler:
        sub = Subscription(role, event, sender_pattern, handler.__name__, handler)
        if any(s.task_name == sub.task_name for s in SUBSCRIPTIONS):
            raise ValueError(f"duplicate event handler {sub.task_name}")
        SUBSCRIPTIONS.append(sub)

        @app.task(name=sub.task_name, queue=sub.queue, typing=False, bind=True,
                  max_retries=None)
        def handle(task: Task, event_name: str, args: list, sender: str) -> Any:
            if not isinstance(args, list) or not isinstance(sender, str):
                raise InvalidArgument(f"{sub.task_name}: args of {event_name!r:.60} must be a "
                                      f"list and sender a string, got {args!r:.60} / "
                                      f"{sender!r:.40}")
            return deliver_reliably(task, sub.queue, lambda: run_in_unit_of_work(
                handler, (list(args), sender)))

        return handler

    return register


def matching(event: str, sender: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.matches(event, sender)]


def dispatch(session: Session, event: str, args: list, sender: str) -> list[str]:
    """Fan one event out to the handler queue of every matching subscription."""
    sent = []
    for sub in matching(event, sender):
        outbox.tasks.send(session, sub.queue, sub.task_name, event, list(args), sender)
        sent.append(sub.task_name)
    return sent


class MalformedEvent(Exception):
    """An event message whose arguments are not (name, list, sender)."""


@app.task(name=wire.EVENT_DELIVER, queue=wire.EVENTS, typing=False, bind=True,
          max_retries=None, topic_exchange=wire.EVENTS_EXCHANGE)
def deliver(task: Task, event: str, args: list, sender: str,
            published_at: str | None = None) -> Any:
    """The dispatcher: runs once per event on the ``events`` queue."""

    def run() -> list[str]:
        if not isinstance(event, str) or not isinstance(args, list) or \
                not isinstance(sender, str):
            raise MalformedEvent(f"malformed event: {event!r} {args!r} {sender!r} published "
                                 f"{published_at!r}"[:1000])
        return run_in_unit_of_work(dispatch, (event, args, sender))

    return deliver_reliably(task, wire.EVENTS, run)


def backoff(retries: int, longest: float) -> float:
    """Seconds before retry number ``retries + 1``: 1, 2, 4, ... capped at ``longest``."""
    return float(min(2 ** retries, longest))


def deliver_reliably(task: Task, queue: str, run: Callable[[], Any]) -> Any:
    """``run()``; a transient failure is retried with backoff, what still fails is parked."""
    settings = load_settings()
    try:
        return run()
    except TransientError as exc:
        retries = task.request.retries
        if retries < settings.event_retries:
            delay = backoff(retries, settings.event_retry_backoff_max)
            log.warning("%s[%s] failed (%s); retry %d/%d in %gs", task.name, task.request.id,
                        exc, retries + 1, settings.event_retries, delay)
            raise task.retry(exc=exc, countdown=delay) from None
        return _park(task, queue, exc, settings.event_retry_backoff_max)
    except Exception as exc:  # noqa: BLE001 - not transient: parked at once, never dropped
        return _park(task, queue, exc, settings.event_retry_backoff_max)


def _park(task: Task, queue: str, exc: BaseException, longest: float) -> dict[str, int]:
    request = task.request
    error_type = getattr(exc, "error_type", type(exc).__name__)
    try:
        letter = run_in_unit_of_work(dead_letters.park, kwargs={
            "source": "task", "task_name": task.name, "queue": queue, "task_id": request.id,
            "args": list(request.args or ()), "kwargs": dict(request.kwargs or {}),
            "error_type": error_type, "error": str(exc), "attempts": request.retries + 1})
    except Exception as park_error:  # noqa: BLE001 - the database is down too
        log.error("%s[%s] failed (%s) and cannot be parked (%s): kept in the broker, "
                  "retried in %gs", task.name, request.id, exc, park_error, longest)
        raise task.retry(exc=exc, countdown=longest) from None
    log.error("%s[%s] parked as dead letter %d after %d attempt(s): %s: %s", task.name,
              request.id, letter, request.retries + 1, error_type, exc)
    if isinstance(exc, CollectorError):
        raise exc  # parked, and a caller waiting on the task gets its typed error
    return {"dead_letter": letter}
