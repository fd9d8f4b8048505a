"""Where each task's message goes: RPC endpoints are queues of the same name.

The Celery settings (``celeryconfig``) and the registry read these; worker roles
(``workers.roles``) choose which of the queues a process consumes.
"""

from __future__ import annotations

from typing import Any

RPC_ENDPOINTS = (
    "hva-collector", "sta-collector", "natbox-collector", "alarm-collector",
    "resource-collector", "jobqueue-proxy", "node-collector", "scheduler", "api",
)


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None,
               **_kw: Any) -> dict | None:
    """RPC tasks ``<endpoint>.<method>`` go to the ``<endpoint>`` queue unless told otherwise."""
    endpoint = name.split(".", 1)[0]
    if endpoint in RPC_ENDPOINTS:
        return {"queue": endpoint}
    if endpoint == "maintenance":
        return {"queue": "maintenance"}
    return None
