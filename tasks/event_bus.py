"""Events: each subscribing role handles an event once, end to end.

Every event lands on the ``events`` queue (bound to the topic exchange with ``#``). The
dispatcher task there writes, in one transaction, the event's ``dispatch`` receipt and one
outbox row per matching subscription; each row becomes the handler task
``events.<role>.<handler>`` on the role's durable queue ``events.<role>``, with a task id
fixed by the event id and the handler (``event_receipts.handler_message_id``) and the
event id as its ``event_id`` keyword argument. So a role sees an event once however many
workers it runs.

    @subscribe("alarm-collector", "hva/instance_terminated")
    def delete_instance_alarms(session, args, sender): ...

Handlers are domain functions ``(session, args: list, sender: str)``. The task around one
writes its receipt ``(event_id, handler task)`` in the handler's own transaction, before the
handler runs: a repeat of the message (a redelivery, a re-send, a second dispatch) finds
the receipt and does nothing (``{"duplicate": True}``). The event id is the Celery task id
of the ``events.deliver`` message (``event_id`` keyword argument when a dead letter is
replayed). A message Redis lost is sent again (``resend_unconfirmed``: a pass of every
worker's ``tasks.worker_sweeper``, and beat's ``maintenance.resend_events``): an event of
the outbox with no ``dispatch`` receipt, a handler message with no receipt,
COLLECTOR_EVENT_RESEND_AFTER seconds after it was sent.
Agents re-publish their own events until the dispatcher's result says it ran
(``workers.agent.client``); the dispatcher stores its result under the event id.

Nothing is dropped when the dispatcher or a handler fails (Celery acknowledges a failed
task, even with ``acks_late``): a transient database error is retried with exponential
backoff (1, 2, 4 ... s, at most COLLECTOR_EVENT_RETRY_BACKOFF_MAX) up to
COLLECTOR_EVENT_RETRIES times; what still fails, and any other error at once, is parked in
the ``dead_letters`` table (``collector dead-letters list|replay``); its transaction, and the
receipt in it, rolled back, so a replay runs. If the database is too down to take the dead
letter, the message stays in the broker, retried at the longest backoff until it can be
handled or parked.

An event no Collector handler subscribes to (agents may, on their own queues) is sent once
and dispatched with no transaction: nothing waits for its receipt.

The dispatcher runs only from messages published to the events exchange (or found on its
own queue); a handler task only from its role's queue (``tasks.base``).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from collector import wire
from collector.config import load_settings
from collector.db import outbox
from collector.errors import CollectorError, InvalidArgument, TransientError
from collector.models import DISPATCH
from collector.services import dead_letters, event_receipts
from collector.services.authorization import Caller, may_publish
from collector.topics import topic_matches
from tasks import relay
from tasks.app import app
from tasks.authentication import caller_of
from tasks.execution import run_in_unit_of_work
from tasks.worker_sweeper import register_pass

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
        def handle(task: Task, event_name: str, args: list, sender: str, *,
                   event_id: str | None = None) -> Any:
            if not isinstance(args, list) or not isinstance(sender, str) or \
                    not isinstance(event_id, str | None):
                raise InvalidArgument(f"{sub.task_name}: args of {event_name!r:.60} must be a "
                                      f"list, sender and event_id strings, got {args!r:.60} / "
                                      f"{sender!r:.40} / {event_id!r:.40}")
            return deliver_reliably(task, sub.queue, lambda: run_in_unit_of_work(
                handle_once, (sub, event_id, list(args), sender, task.request.id)))

        return handler

    return register


def matching(event: str, sender: str) -> list[Subscription]:
    _load_every_subscription()
    return [s for s in SUBSCRIPTIONS if s.matches(event, sender)]


_every_module_loaded = False


def _load_every_subscription() -> None:
    """Subscriptions register on import: every task module is imported before the first
    answer, so a process that serves one role knows the others' subscriptions too."""
    global _every_module_loaded
    if not _every_module_loaded:
        from tasks.app import TASK_MODULES

        for name in TASK_MODULES:
            importlib.import_module(name)
        _every_module_loaded = True


def handled_by_collector(event: str, sender: str) -> bool:
    """Whether some Collector handler subscribes to ``event`` from ``sender``."""
    return bool(matching(event, sender))


outbox.route_events_by(handled_by_collector)


def handle_once(session: Session, sub: Subscription, event_id: str | None, args: list,
                sender: str, message_id: str | None = None) -> Any:
    """The handler, unless its receipt for ``event_id`` exists (then nothing runs). A
    message with no event id (sent before receipts existed) runs as it is. ``message_id``:
    the message's task id (its outbox row stops waiting for a receipt)."""
    if event_id is not None and not event_receipts.record(session, event_id, sub.task_name,
                                                          message_id):
        log.info("%s: event %s already handled; repeat ignored", sub.task_name, event_id)
        return {"duplicate": True}
    return sub.handler(session, args, sender)


def dispatch(session: Session, event: str, args: list, sender: str,
             event_id: str | None = None) -> list[str]:
    """Fan one event out to the handler queue of every matching subscription."""
    sent = []
    for sub in matching(event, sender):
        if event_id is None:
            outbox.tasks.send(session, sub.queue, sub.task_name, event, list(args), sender)
        else:
            outbox.tasks.send(session, sub.queue, sub.task_name, event, list(args), sender,
                              task_id=event_receipts.handler_message_id(event_id, sub.task_name),
                              awaiting_receipt=True, event_id=event_id)
        sent.append(sub.task_name)
    return sent


def dispatch_once(session: Session, event_id: str | None, event: str, args: list,
                  sender: str, message_id: str | None = None) -> list[str] | dict[str, bool]:
    """``dispatch`` with its ``dispatch`` receipt, in one transaction; a repeat of the event
    (same id) writes nothing. ``message_id``: as for ``handle_once``."""
    if event_id is not None and not event_receipts.record(session, event_id, DISPATCH,
                                                          message_id):
        log.info("event %s already dispatched; repeat ignored", event_id)
        return {"duplicate": True}
    return dispatch(session, event, args, sender, event_id)


class MalformedEvent(Exception):
    """An event message whose arguments are not (name, list, sender)."""


def _nothing_to_dispatch(args: tuple, kwargs: dict, caller: Caller | None) -> list | None:
    """The dispatcher's answer (``[]``) for an event no Collector handler subscribes to and
    its sender may publish, known at receipt (its arguments checked as for a run): such a
    message is acknowledged without a task run (``tasks.base``). Anything else (refused,
    handled here) runs."""
    event, _args, sender = args[:3]
    if matching(event, sender):
        return None
    try:
        may_publish(caller, event, sender)
    except CollectorError:
        return None  # the task refuses it, as for any other event
    return []


@app.task(name=wire.EVENT_DELIVER, queue=wire.EVENTS, typing=False, bind=True,
          max_retries=None, topic_exchange=wire.EVENTS_EXCHANGE,
          answer_at_receipt=staticmethod(_nothing_to_dispatch))
def deliver(task: Task, event: str, args: list, sender: str,
            published_at: str | None = None, *, event_id: str | None = None) -> Any:
    """The dispatcher: runs once per event (its task id, or ``event_id``) on the ``events``
    queue; a repeat of an event already dispatched does nothing."""
    event_id = event_id or task.request.id
    # Before anything is written (not even a dead letter): an agent publishes only its own
    # kind's events, as itself.
    may_publish(caller_of(task.request), event, sender)

    def run() -> list[str] | dict[str, bool]:
        if not isinstance(event, str) or not isinstance(args, list) or \
                not isinstance(sender, str) or not isinstance(event_id, str | None):
            raise MalformedEvent(f"malformed event: {event!r} {args!r} {sender!r} published "
                                 f"{published_at!r} id {event_id!r}"[:1000])
        if not matching(event, sender):
            return []  # only agents may take it: no receipt to keep, nothing to write
        return run_in_unit_of_work(dispatch_once,
                                   (event_id, event, args, sender, task.request.id))

    # A replayed dead letter keeps the event's id.
    return deliver_reliably(task, wire.EVENTS, run,
                            {"event_id": event_id} if isinstance(event_id, str) else None)


def backoff(retries: int, longest: float) -> float:
    """Seconds before retry number ``retries + 1``: 1, 2, 4, ... capped at ``longest``."""
    return float(min(2 ** retries, longest))


def deliver_reliably(task: Task, queue: str, run: Callable[[], Any],
                     parked_kwargs: dict[str, Any] | None = None) -> Any:
    """``run()``; a transient failure is retried with backoff, what still fails is parked
    (with ``parked_kwargs`` added to the message's keyword arguments)."""
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
        return _park(task, queue, exc, settings.event_retry_backoff_max, parked_kwargs)
    except Exception as exc:  # noqa: BLE001 - not transient: parked at once, never dropped
        return _park(task, queue, exc, settings.event_retry_backoff_max, parked_kwargs)


def _park(task: Task, queue: str, exc: BaseException, longest: float,
          parked_kwargs: dict[str, Any] | None = None) -> dict[str, int]:
    request = task.request
    error_type = getattr(exc, "error_type", type(exc).__name__)
    try:
        letter = run_in_unit_of_work(dead_letters.park, kwargs={
            "source": "task", "task_name": task.name, "queue": queue, "task_id": request.id,
            "args": list(request.args or ()), "kwargs": {**(request.kwargs or {}), **(parked_kwargs or {})},
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


def resend_unconfirmed(limit: int = 200) -> int:
    """One re-send pass: outbox messages of events not dispatched, and of handlers not run,
    COLLECTOR_EVENT_RESEND_AFTER seconds after they were sent, are published again under
    their task id (``event_receipts.resend_events``); returns how many. Safe to run
    concurrently (SKIP LOCKED, the relay's claims); with nothing to re-send it only reads."""
    settings = load_settings()
    window = {"older_than": settings.event_resend_after, "retention": settings.outbox_retention}
    if not run_in_unit_of_work(event_receipts.any_to_resend, kwargs=window, readonly=True):
        return 0
    ids = run_in_unit_of_work(event_receipts.resend_events, kwargs={**window, "limit": limit})
    if not ids:
        return 0
    log.warning("re-sending %d event message(s) with no receipt after %gs", len(ids),
                settings.event_resend_after)
    try:
        relay.publish_rows(relay.publisher(app.conf.broker_url), ids)
    except Exception:  # noqa: BLE001 - the rows are unsent: the outbox sweep sends them
        log.warning("re-send of %d event message(s) left to the outbox sweep", len(ids),
                    exc_info=True)
    return len(ids)


_next_worker_pass = 0.0


@register_pass
def resend_unconfirmed_in_worker() -> int:
    """Every worker's re-send pass (``tasks.worker_sweeper``), at most every half
    COLLECTOR_EVENT_RESEND_AFTER in one process: lost event messages are sent again even
    when beat is down."""
    global _next_worker_pass
    now = time.monotonic()
    if now < _next_worker_pass:
        return 0
    _next_worker_pass = now + load_settings().event_resend_after / 2
    return resend_unconfirmed()
