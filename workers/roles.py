"""Which queues each worker role consumes, and the pool it runs them with.

A role is a deployable unit: ``collector worker --role hva-collector`` consumes the
``hva-collector`` queue; ``all`` consumes every collector queue (the embedded default).
Event handlers of a role get their own durable queue ``events.<role>``.
"""

from __future__ import annotations

import os

from tasks.routing import RPC_ENDPOINTS

__all__ = ["ROLES", "ROLE_POOLS", "RPC_ENDPOINTS", "pool_for", "queues_for"]

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


# The pool each role runs unless told otherwise (--pool/--concurrency, or
# COLLECTOR_WORKER_CONCURRENCY), chosen from ``python -m bench --pools
# threads:4,prefork:2,solo:1`` on a 2-core machine, SQLite and PostgreSQL, 8 callers:
# - threads x4: the most calls per second for short calls (SQLite: no-op 388/s,
#   get_instance 258/s) in the least memory (99 MB); beside one slow call (a 5,000-vnic
#   netfilter document) its get_instance rate halves (128/s, p99 166 ms).
# - prefork x2: as many get_instance calls (245/s), the best beside a slow call (174/s, p99
#   107 ms: the slow call has a core of its own), but 2.8x the memory (278 MB) and more CPU
#   per call (a hand-off to the child).
# - solo: the least CPU per call, but one slow call stops everything (p99 357-681 ms).
# hva-collector builds the per-node documents (hundreds of milliseconds of Python each):
# a process per core. The other endpoints answer short calls: threads.
_PROCESS_PER_CORE = ("prefork", 0)  # 0: as many processes as cores
ROLE_POOLS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(ROLES, ("threads", 4)),
    "hva-collector": _PROCESS_PER_CORE,
    "scheduler": ("threads", 2),
    "api": ("threads", 2),
    "maintenance": ("threads", 2),
}


def pool_for(role: str) -> tuple[str, int]:
    """The worker pool and concurrency a role runs with unless told otherwise."""
    queues_for(role)
    pool, concurrency = ROLE_POOLS[role]
    return pool, concurrency or os.cpu_count() or 2
