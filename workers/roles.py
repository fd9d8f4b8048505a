"""Which queues each worker role consumes.

A role is a deployable unit: ``collector worker --role hva-collector`` consumes the
``hva-collector`` queue; ``all`` consumes every collector queue (the embedded default).
Event handlers of a role get their own durable queue ``events.<role>``.
"""

from __future__ import annotations

from tasks.routing import RPC_ENDPOINTS

__all__ = ["ROLES", "RPC_ENDPOINTS", "queues_for"]

ROLES: dict[str, tuple[str, ...]] = {
    "hva-collector": ("hva-collector",),
    "sta-collector": ("sta-collector",),
    "natbox-collector": ("natbox-collector",),
    "alarm-collector": ("alarm-collector", "events.alarm-collector"),
    "resource-collector": ("resource-collector",),
    "jobqueue-proxy": ("jobqueue-proxy",),
    "node-collector": ("node-collector",),
    "scheduler": ("scheduler", "events.scheduler"),
    "api": ("api",),
    "events": ("events", "events.event-hook"),
    "maintenance": ("maintenance", "collector"),
}
ROLES["all"] = tuple(dict.fromkeys(q for queues in ROLES.values() for q in queues))


def queues_for(role: str) -> tuple[str, ...]:
    try:
        return ROLES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(sorted(ROLES))}") from None
