"""Where each task's message goes, and which queues each worker role consumes, both derived
from the wire's one list of endpoints (``collector.wire``).

- An RPC endpoint is a queue of the same name, and a role of the same name serving it (and
  its own event queue when it subscribes to events).
- The ``events`` role serves the dispatcher's queue and the event queues of subscribers that
  are not RPC endpoints; the ``maintenance`` role serves beat's tasks (and Celery's default
  queue, where nothing is sent on purpose); ``all`` serves every queue.

The Celery settings (``celeryconfig``), the registry, the worker roles (``workers.roles``),
the Procfile's check and the reference document read these.
"""

from __future__ import annotations

from typing import Any

from collector import wire

ALL = "all"


def _role_queues() -> dict[str, tuple[str, ...]]:
    roles: dict[str, tuple[str, ...]] = {
        endpoint: (endpoint, *((wire.event_queue(endpoint),)
                               if endpoint in wire.EVENT_SUBSCRIBERS else ()))
        for endpoint in wire.RPC_ENDPOINTS
    }
    roles[wire.EVENTS] = (wire.EVENTS, *(wire.event_queue(subscriber)
                                         for subscriber in wire.EVENT_SUBSCRIBERS
                                         if subscriber not in wire.RPC_ENDPOINTS))
    roles[wire.MAINTENANCE] = (wire.MAINTENANCE, wire.DEFAULT_QUEUE)
    roles[ALL] = tuple(dict.fromkeys(queue for queues in roles.values() for queue in queues))
    return roles


# Role -> the queues its workers consume.
ROLE_QUEUES = _role_queues()
# Queues a task is routed to by its name's first part (``<endpoint>.<method>``).
_ROUTED = frozenset((*wire.RPC_ENDPOINTS, wire.MAINTENANCE))


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None,
               **_kw: Any) -> dict | None:
    """``<endpoint>.<method>`` goes to the ``<endpoint>`` queue unless told otherwise."""
    endpoint = wire.endpoint_of(name)
    return {"queue": endpoint} if endpoint in _ROUTED else None
