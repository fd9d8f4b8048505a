"""Turn plain domain functions into named Celery tasks ``<endpoint>.<method>``.

``Endpoint(wire.HVA_COLLECTOR).reads(hva.get_instance, ...).writes(hva.update_instance, ...)``
registers one task per function, readers in a read-only unit of work. Each task validates its arguments against the function's signature and type
hints *before* any work (wrong count, unknown keyword, wrong type, or a value that the
databases would not take alike -> InvalidArgument; see ``tasks.arguments``), runs the
function with a session inside one unit of work, and returns only after the commit. Only
exposed functions exist as tasks: nothing else is callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from collector import wire
from tasks.app import app
from tasks.arguments import ArgumentValidator
from tasks.execution import run_in_unit_of_work

__all__ = ["EXPOSED", "ArgumentValidator", "Endpoint"]

log = logging.getLogger(__name__)


RESULT_REPR_CHARS = 160

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


class Endpoint:
    """A named group of tasks served from the queue of the same name.

    ``on_committed(answer)``, when given, sees each task's answer after the commit and
    returns what the task answers; it may raise, failing the task without undoing the
    commit (a job whose failure is itself state to keep, such as a failed placement).
    """

    def __init__(self, name: str,
                 on_committed: Callable[[Any], Any] | None = None) -> None:
        self.name = name
        self.on_committed = on_committed
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
                 guard: Callable[..., None] | None = None) -> Task:
        """``fn`` as the task ``<endpoint>.<method>``. ``guard``, when given, is called with
        the checked arguments before the unit of work begins (no transaction is held while
        it waits) and refuses the call by raising a typed error."""
        validator = ArgumentValidator(fn)
        task_name = wire.task(self.name, method)
        on_committed = self.on_committed

        def run(*args: Any, **kwargs: Any) -> Any:
            # The task class checked the arguments with ``validator`` before this runs.
            if guard is not None:
                guard(*args, **kwargs)
            answer = run_in_unit_of_work(fn, args, kwargs, readonly=readonly)
            return on_committed(answer) if on_committed else answer

        run.__name__ = method
        run.__qualname__ = task_name
        run.__doc__ = fn.__doc__
        # Celery writes a repr of each answer into its success log line and event: a few
        # characters say enough, a whole document costs as much as building it. The tasks
        # start no subtasks: no trail of them to keep.
        task = app.task(name=task_name, queue=self.name, typing=False, arguments=validator,
                        resultrepr_maxsize=RESULT_REPR_CHARS, trail=False)(run)
        self.tasks[method] = task
        EXPOSED[task_name] = fn
        return task


# Every RPC role answers ``ping`` even before its methods exist.
for _endpoint in wire.RPC_ENDPOINTS:
    _register_ping(_endpoint)
