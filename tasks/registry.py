"""Turn plain domain functions into named Celery tasks ``<endpoint>.<method>``.

``Endpoint(wire.HVA_COLLECTOR).reads(hva.get_instance, ...).writes(hva.update_instance, ...)``
registers one task per function, readers in a read-only unit of work. Each task validates its arguments against the function's signature and type
hints *before* any work (wrong count, unknown keyword, wrong type, or a value that the
databases would not take alike -> InvalidArgument; see ``tasks.arguments``), runs the
function with a session inside one unit of work, and returns only after the commit. Only
exposed functions exist as tasks: nothing else is callable.

A task registered with a ``RetryTransient`` policy is retried by Celery when it fails with
``TransientError`` (the database unreachable, a pool timeout, deadlocks beyond the
in-place retries): a new message under the same id after 1, 2, 4 ... s (capped at
COLLECTOR_EVENT_RETRY_BACKOFF_MAX, itself at most half the visibility timeout, so a waiting
retry is never redelivered), for COLLECTOR_JOB_RETRY_FOR seconds of backoff in all. Its result
meanwhile is RETRY and its ``link``/``link_error`` callbacks wait for the final outcome, so
the ledger row of a job stays non-final until the job has really ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from collector import wire
from collector.db import outbox
from collector.errors import TransientError
from collector.services import authorization
from collector.services.authorization import Caller
from collector.services.jobs import own_jobs
from tasks.app import app
from tasks.arguments import ArgumentValidator
from tasks.authentication import caller_of
from tasks.event_bus import backoff
from tasks.execution import run_in_unit_of_work, worker_settings

__all__ = ["EXPOSED", "ArgumentValidator", "Endpoint", "RetryTransient"]

log = logging.getLogger(__name__)


RESULT_REPR_CHARS = 160
JOB_ID_PREFIX = "job-"  # a pushed job's Celery task id is its ledger id (collector.db.outbox)

_PINGS: set[str] = set()

# Task name -> the domain function it runs (signature and docstring for the reference document).
EXPOSED: dict[str, Callable[..., Any]] = {}


def _register_ping(endpoint: str) -> None:
    """``<endpoint>.ping``: no database, just a consumed message (health checks, baselines)."""
    if endpoint in _PINGS:
        return
    _PINGS.add(endpoint)

    def ping() -> dict[str, str]:
        """Answers without touching the database: proves a worker consumes this queue."""
        import socket

        return {"endpoint": endpoint, "host": socket.gethostname()}

    app.task(name=wire.task(endpoint, wire.PING), queue=endpoint, typing=False)(ping)


@dataclass(frozen=True)
class RetryTransient:
    """Retry a task that failed with ``TransientError`` (see the module docstring).

    ``jobs_only``: only a message that is a job of the ledger (its id ``job-...``): nobody
    waits on a job but its ledger row, while an RPC caller gets the error at once and
    decides itself (its call expires with its timeout anyway)."""

    jobs_only: bool = False

    def countdown(self, task: Task) -> float | None:
        """Seconds before the next try of the running ``task``; None: fail now."""
        request = task.request
        if request.called_directly:
            return None  # no message to send again: the caller sees the error
        if self.jobs_only and not str(request.id or "").startswith(JOB_ID_PREFIX):
            return None
        settings = worker_settings()
        longest = settings.event_retry_backoff_max
        waited = sum(backoff(n, longest) for n in range(request.retries or 0))
        return backoff(request.retries or 0, longest) if waited < settings.job_retry_for \
            else None


def _finishing_job(fn: Callable[..., Any], job_id: str) -> Callable[..., Any]:
    """``fn``, then its job's ledger row finished in the same transaction."""

    def work(session: Session, *args: Any, **kwargs: Any) -> Any:
        return own_jobs.run(session, job_id, fn, args, kwargs)

    work.__qualname__ = fn.__qualname__
    return work


def _authorized(work: Callable[..., Any], caller: Caller, task_name: str,
                fn: Callable[..., Any]) -> Callable[..., Any]:
    """``work``, after the check that ``caller`` may call ``task_name`` on these arguments,
    in the same transaction (``collector.services.authorization``)."""

    def checked(session: Session, *args: Any, **kwargs: Any) -> Any:
        authorization.check(session, caller, task_name, fn, args, kwargs)
        return work(session, *args, **kwargs)

    checked.__qualname__ = fn.__qualname__
    return checked


class Endpoint:
    """A named group of tasks served from the queue of the same name.

    ``on_committed(answer)``, when given, sees each task's answer after the commit and
    returns what the task answers; it may raise, failing the task without undoing the
    commit (a job whose failure is itself state to keep, such as a failed placement).
    ``retry``, when given, is the retry policy of every task of the endpoint.
    An endpoint whose queue is one of the Collector's own job queues
    (``outbox.COLLECTOR_JOB_QUEUES``) ends a job of the ledger (a task id ``job-...``) in the
    task's own transaction (``own_jobs.run``, which also batches waiting placements); the
    relay sends such jobs with no success callback (``tasks.relay``), only the failure one
    for what never committed.
    """

    def __init__(self, name: str, on_committed: Callable[[Any], Any] | None = None,
                 retry: RetryTransient | None = None) -> None:
        self.name = name
        self.on_committed = on_committed
        self.retry = retry
        self.tasks: dict[str, Task] = {}
        _register_ping(name)

    def reads(self, *functions: Callable[..., Any], **renamed: Callable[..., Any]) -> Endpoint:
        """Expose readers: each runs in a read-only unit of work (a write is refused)."""
        return self._expose(functions, renamed, readonly=True)

    def writes(self, *functions: Callable[..., Any], **renamed: Callable[..., Any]) -> Endpoint:
        """Expose writers: each runs in one read-write transaction."""
        return self._expose(functions, renamed, readonly=False)

    def _expose(self, functions: tuple[Callable[..., Any], ...],
                renamed: dict[str, Callable[..., Any]], readonly: bool) -> Endpoint:
        for method, fn in [*((fn.__name__, fn) for fn in functions), *renamed.items()]:
            self.register(method, fn, readonly=readonly)
        return self

    def register(self, method: str, fn: Callable[[Session], Any], readonly: bool = False,
                 guard: Callable[..., None] | None = None,
                 retry: RetryTransient | None = None) -> Task:
        """``fn`` as the task ``<endpoint>.<method>``. ``guard``, when given, is called with
        the checked arguments before the unit of work begins (no transaction is held while
        it waits) and refuses the call by raising a typed error. ``retry``: the retry
        policy (default: the endpoint's)."""
        validator = ArgumentValidator(fn)
        task_name = wire.task(self.name, method)
        on_committed = self.on_committed
        policy = retry or self.retry
        finishes_own_jobs = self.name in outbox.COLLECTOR_JOB_QUEUES

        def run(task: Task, *args: Any, **kwargs: Any) -> Any:
            # The task class checked the arguments with ``validator`` before this runs.
            work = fn
            job_id = str(task.request.id or "")
            if finishes_own_jobs and job_id.startswith(JOB_ID_PREFIX):
                work = _finishing_job(fn, job_id)
            caller = caller_of(task.request)
            if caller is not None and not caller.trusted:
                work = _authorized(work, caller, task_name, fn)
            try:
                if guard is not None:
                    guard(*args, **kwargs)
                answer = run_in_unit_of_work(work, args, kwargs, readonly=readonly)
            except TransientError as exc:
                countdown = policy.countdown(task) if policy is not None else None
                if countdown is None:
                    raise
                log.warning("%s[%s]: %s; retry %d in %gs", task_name, task.request.id, exc,
                            (task.request.retries or 0) + 1, countdown)
                raise task.retry(exc=exc, countdown=countdown) from None
            # After the commit: what this raises is the outcome, never retried.
            return on_committed(answer) if on_committed else answer

        run.__name__ = method
        run.__qualname__ = task_name
        run.__doc__ = fn.__doc__
        # Celery writes a repr of each answer into its success log line and event: a few
        # characters say enough, a whole document costs as much as building it. The tasks
        # start no subtasks: no trail of them to keep.
        task = app.task(name=task_name, queue=self.name, typing=False, arguments=validator,
                        resultrepr_maxsize=RESULT_REPR_CHARS, trail=False, bind=True,
                        max_retries=None, finishes_own_jobs=finishes_own_jobs)(run)
        self.tasks[method] = task
        EXPOSED[task_name] = fn
        return task


# Every RPC role answers ``ping`` even before its methods exist.
for _endpoint in wire.RPC_ENDPOINTS:
    _register_ping(_endpoint)
