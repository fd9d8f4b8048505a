"""Turn plain domain functions into named Celery tasks ``<endpoint>.<method>``.

``Endpoint("hva-collector").expose(services.hva.get_instance, ...)`` registers one task per
function. Each task validates its arguments against the function's signature and type
hints *before* any work (wrong count, unknown keyword or wrong type -> InvalidArgument),
runs the function with a session inside one unit of work, and returns only after the
commit. Only exposed functions exist as tasks: nothing else is callable.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, get_type_hints

from celery import Task
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from collector.errors import InvalidArgument
from tasks.app import app
from tasks.routing import RPC_ENDPOINTS
from tasks.unit_of_work import run_in_unit_of_work

log = logging.getLogger(__name__)


class ArgumentValidator:
    """Checks call arguments against a domain function's signature (session excluded)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if not params or params[0].name != "session":
            raise TypeError(f"{fn.__qualname__} must take `session` as its first parameter")
        self.signature = signature.replace(parameters=params[1:])
        hints = get_type_hints(fn)
        self.adapters: dict[str, TypeAdapter] = {
            p.name: TypeAdapter(hints[p.name]) for p in params[1:] if p.name in hints
        }

    def __call__(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"bad arguments: {exc}") from None
        for name, value in bound.arguments.items():
            adapter = self.adapters.get(name)
            if adapter is None:
                continue
            param = self.signature.parameters[name]
            try:
                if param.kind is param.VAR_POSITIONAL:
                    continue
                bound.arguments[name] = adapter.validate_python(value, strict=True)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "")
                detail = f"{name}{'.' + where if where else ''}: {first['msg']}"
                raise InvalidArgument(f"invalid argument {detail} (got {value!r:.80})") from None
        return bound


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

    app.task(name=f"{endpoint}.ping", queue=endpoint, typing=False)(ping)


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

    def expose(self, *functions: Callable[..., Any], **renamed: Callable[..., Any]) -> Endpoint:
        for fn in functions:
            self.register(fn.__name__, fn)
        for method, fn in renamed.items():
            self.register(method, fn)
        return self

    def register(self, method: str, fn: Callable[[Session], Any]) -> Task:
        validator = ArgumentValidator(fn)
        task_name = f"{self.name}.{method}"
        # Readers by name (get_*/list*/show_*) run in a read-only unit of work.
        readonly = method.startswith(("get_", "list", "show_"))
        on_committed = self.on_committed

        def run(*args: Any, **kwargs: Any) -> Any:
            bound = validator(args, kwargs)
            answer = run_in_unit_of_work(fn, bound.args, bound.kwargs, readonly=readonly)
            return on_committed(answer) if on_committed else answer

        run.__name__ = method
        run.__qualname__ = task_name
        run.__doc__ = fn.__doc__
        # Celery writes a repr of each answer into its success log line and event: a few
        # characters say enough, a whole document costs as much as building it. The tasks
        # start no subtasks: no trail of them to keep.
        task = app.task(name=task_name, queue=self.name, typing=False,
                        resultrepr_maxsize=RESULT_REPR_CHARS, trail=False)(run)
        self.tasks[method] = task
        EXPOSED[task_name] = fn
        return task


# Every RPC role answers ``ping`` even before its methods exist.
for _endpoint in RPC_ENDPOINTS:
    _register_ping(_endpoint)
