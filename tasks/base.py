"""What every Collector task and worker enforces before a task body runs.

- ``CollectorTask`` (the app's task class): the arguments are checked against the task's
  signature, type hints and wire rules (``tasks.arguments``); a wrong call answers
  InvalidArgument, never a raw ``TypeError``. A task may bring its own validator
  (``arguments=``, the registry's for domain functions).
- A task runs only from a message whose sender is proven (its ``collector_auth`` signature,
  ``tasks.authentication``) and may call it (``collector.services.authorization``): any
  other is refused with Unauthorized, acknowledged and never run.
- A task runs only from the queue it is served from (its ``queue``): a message that arrived
  with another routing key (``maintenance.*`` sent to ``hva-collector``, a forged
  ``events.deliver``) is refused with WrongQueue, acknowledged and never run. A task with a
  ``topic_exchange`` also runs from messages published to that exchange (the event
  dispatcher, whose routing keys are event names).
- A worker serves only the tasks of the queues it consumes (``serve_only``): Celery's own
  ``celery.*`` tasks and other roles' tasks are not registered in it, so Celery answers
  ``NotRegistered`` without running anything.
- Arguments shown in task events and logs (Flower) are recomputed from the arguments with
  sensitive values masked (``collector.redaction``), whatever the publisher sent.
- A refusal the domain answers by design (``EXPECTED_ERRORS``: an unknown id, no room, a
  bad argument, a refused transition, ...) is logged by the worker as one INFO line
  (``Task api.show_instance[...] raised expected: UnknownInstanceID(...)``), without a
  traceback: Celery's ``Task.throws``. ``InternalError`` and ``TransientError`` (something
  failed inside the Collector or its database) and any other exception stay unexpected:
  ERROR with their traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery, Task
from celery.utils.objects import Bunch
from celery.worker.request import Request
from celery.worker.strategy import default as default_strategy

from collector.errors import CollectorError, InternalError, WrongQueue
from collector.redaction import masked_repr
from tasks import taken_along
from tasks.arguments import ArgumentValidator

log = logging.getLogger(__name__)

# Every typed error but the InternalError branch (its subclasses included): the branches
# under CollectorError, so a subclass added later (a dynamic PlacementError) is covered.
EXPECTED_ERRORS: tuple[type[CollectorError], ...] = tuple(
    cls for cls in CollectorError.__subclasses__() if not issubclass(cls, InternalError))


class MaskedRequest(Request):
    """A worker's request whose ``argsrepr``/``kwargsrepr`` never show a sensitive value."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        self._argsrepr = masked_repr(self._args)
        self._kwargsrepr = masked_repr(self._kwargs)


class CollectorTask(Task):
    """The base of every Collector task (see the module docstring)."""

    Request = f"{__name__}:MaskedRequest"
    Strategy = f"{__name__}:queue_checked_strategy"
    # The validator of the call's arguments; None: one built from ``run``'s signature.
    arguments: Callable[[tuple | list, dict], Any] | None = None
    # An exchange whose messages this task also runs from (any routing key).
    topic_exchange: str | None = None
    # Logged by Celery at INFO without a traceback when raised (the module docstring).
    throws = EXPECTED_ERRORS
    # ``(args, kwargs, caller) -> answer or None``: a call whose answer is known without
    # running it (its sender and its arguments already checked, as for a run):
    # acknowledged and answered at receipt.
    answer_at_receipt: Callable[[tuple, dict, Any], Any] | None = None
    # A job of the Collector's own job queues (``tasks.registry``): its message may have
    # been answered already by a batch that took its job along (``tasks.taken_along``).
    finishes_own_jobs: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.checked_arguments(args, kwargs)
        return super().__call__(*bound.args, **bound.kwargs)

    def checked_arguments(self, args: tuple | list, kwargs: dict[str, Any]) -> Any:
        """The call's arguments bound to ``run``'s signature; InvalidArgument if bad."""
        validator = type(self).arguments
        if validator is None:
            validator = ArgumentValidator(self.run, session_first=False)
            type(self).arguments = validator
        return validator(args, kwargs)


def served_here(task: Task, delivery_info: dict[str, Any]) -> bool:
    """Whether a message with ``delivery_info`` came the way ``task`` is served."""
    exchange = getattr(task, "topic_exchange", None)
    if exchange and delivery_info.get("exchange") == exchange:
        return True
    queue = getattr(task, "queue", None)
    return bool(queue) and delivery_info.get("routing_key") == queue


def _wrong_queue(task: Task, message: Any) -> WrongQueue:
    delivery_info = message.delivery_info or {}
    arrived = delivery_info.get("routing_key") or delivery_info.get("exchange") or "?"
    return WrongQueue(f"{task.name} is served from queue {task.queue!r}, "
                      f"not from {arrived!r}: refused, not run")


def _refuse(task: Task, consumer: Any, message: Any, exc: CollectorError,
            sender: str = "") -> None:
    """Answer ``exc`` for ``message`` without running it, and drop the message."""
    headers = message.headers or {}
    task_id = headers.get("id")
    log.warning("refused %s[%s]%s: %s", task.name, task_id,
                f" from {sender}" if sender else "", exc)
    message.reject_log_error(log, consumer.connection_errors)
    if not task_id:
        return
    request = Bunch(
        id=task_id, name=task.name, task=task.name, chord=None, chain=None, errbacks=None,
        root_id=headers.get("root_id"), parent_id=headers.get("parent_id"), group=None,
        correlation_id=(message.properties or {}).get("correlation_id"),
        reply_to=(message.properties or {}).get("reply_to"), ignore_result=False,
    )
    if not headers.get("ignore_result"):
        task.backend.mark_as_failure(task_id, exc, request=request, call_errbacks=False)
    dispatcher = consumer.event_dispatcher
    if dispatcher and dispatcher.enabled:
        dispatcher.send("task-failed", uuid=task_id,
                        exception=f"{type(exc).__name__}({str(exc)!r})")


def _answer_at_receipt(task: Task, message: Any, answer: Any) -> None:
    """A message whose answer is known without running it (a job a committed batch of this
    process finished, ``tasks.taken_along``; an event no Collector handler takes):
    acknowledged and answered what it would answer if it ran."""
    headers = message.headers or {}
    message.ack()
    if not headers.get("ignore_result"):
        task.backend.mark_as_done(headers["id"], answer, request=None)


def _known_answer(at_receipt: Callable[[tuple, dict, Any], Any], task: Task, message: Any,
                  caller: Any) -> Any:
    """``at_receipt``'s answer for a call whose arguments pass the task's own checks; None
    (the task runs, and answers bad arguments with their typed error) otherwise. Nothing
    raised here: an error in a strategy would stop the worker's consumer."""
    try:
        args, kwargs, _embed = message.decode()
        bound = task.checked_arguments(args, kwargs)
    except Exception:  # noqa: BLE001 - malformed: the task runs and refuses it
        return None
    try:
        return at_receipt(bound.args, bound.kwargs, caller)
    except Exception:  # noqa: BLE001 - the task runs and meets the problem itself
        log.warning("%s: no answer at receipt for %s", task.name,
                    (message.headers or {}).get("id"), exc_info=True)
        return None


def queue_checked_strategy(task: Task, app: Celery, consumer: Any,
                           **kwargs: Any) -> Callable[..., Any]:
    """Celery's default strategy, behind the checks that the message came the task's way
    and that its sender is proven and may call the task (``tasks.authentication``)."""
    from collector.services.authorization import may_call, refuse
    from tasks.authentication import claimed_sender, sender_of
    from tasks.process_settings import worker_settings

    handle = default_strategy(task, app, consumer, **kwargs)
    check_sender = worker_settings().require_signatures
    at_receipt = getattr(task, "answer_at_receipt", None)
    taken_along_here = getattr(task, "finishes_own_jobs", False)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any,
                             callbacks: Any, **options: Any) -> Any:
        if not served_here(task, message.delivery_info or {}):
            return _refuse(task, consumer, message, _wrong_queue(task, message))
        caller = None
        if check_sender:
            try:
                caller = sender_of(message)
                if not may_call(caller, task.name):
                    raise refuse(caller, f"call {task.name}")
            except CollectorError as exc:  # Unauthorized; TransientError: cannot check now
                return _refuse(task, consumer, message, exc, claimed_sender(message))
        task_id = (message.headers or {}).get("id")
        answer = taken_along.take(task_id) if taken_along_here else None
        if answer is None and at_receipt is not None:
            answer = _known_answer(at_receipt, task, message, caller)
        if answer is not None:
            return _answer_at_receipt(task, message, answer)
        if taken_along_here and taken_along.being_placed(task_id):
            return _hold(consumer.timer, task_id, lambda found: _answer_at_receipt(
                task, message, found), lambda: handle(message, body, ack, reject, callbacks,
                                                      **options))
        return handle(message, body, ack, reject, callbacks, **options)

    return task_message_handler


HOLD_STEP = 0.005  # seconds between two looks at a held message's batch


def _hold(timer: Any, task_id: str, answer: Callable[[Any], None],
          run: Callable[[], None]) -> None:
    """A message whose job a batch of this worker is placing now (``tasks.taken_along``):
    answered at receipt once the batch has committed its answer, run as usual when the
    batch settled without one. Looked at on the worker's own timer, never blocking it."""

    def look() -> None:
        try:
            found = taken_along.take(task_id)
            if found is not None:
                answer(found)
            elif taken_along.being_placed(task_id):
                timer.call_after(HOLD_STEP, look)
            else:
                run()
        except Exception:  # noqa: BLE001 - an error here would stop the consumer
            log.warning("held message %s: running it", task_id, exc_info=True)
            run()

    timer.call_after(HOLD_STEP, look)


def serve_only(app: Celery, queues: Iterable[str]) -> list[str]:
    """Unregister from ``app`` every task not served from one of ``queues`` (Celery's own
    ``celery.*`` tasks included); returns the names removed."""
    served = set(queues)
    removed = [name for name, task in app.tasks.items()
               if name.startswith("celery.") or getattr(task, "queue", None) not in served]
    for name in removed:
        app.tasks.unregister(name)
    return removed
