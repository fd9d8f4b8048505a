"""Which queues each worker role consumes, and the pool it runs them with.

A role is a deployable unit: ``collector worker --role hva-collector`` consumes the
``hva-collector`` queue; ``all`` consumes every collector queue (the embedded default). The
queues of each role are derived from the wire's endpoints (``tasks.routing.ROLE_QUEUES``);
the Procfile has one worker line per role (a test checks it).
"""

from __future__ import annotations

import os

from collector import wire
from tasks.routing import ALL, ROLE_QUEUES

__all__ = ["ALL", "ROLE_POOLS", "ROLE_QUEUES", "pool_for", "queues_for"]


def queues_for(role: str) -> tuple[str, ...]:
    try:
        return ROLE_QUEUES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(sorted(ROLE_QUEUES))}") \
            from None


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
# a process per core. The scheduler places in batches (a bulk launch is seconds of Python):
# two processes (``python -m bench placement --bulk 10000``: 368 placements/s against 282
# with one process; 155-181 with threads x2 before the address reservations, against 228;
# single requests unchanged). The other endpoints answer short calls: threads.
_PROCESS_PER_CORE = ("prefork", 0)  # 0: as many processes as cores
ROLE_POOLS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(ROLE_QUEUES, ("threads", 4)),
    wire.HVA_COLLECTOR: _PROCESS_PER_CORE,
    wire.SCHEDULER: ("prefork", 2),
    wire.API: ("threads", 2),
    wire.MAINTENANCE: ("threads", 2),
}


def pool_for(role: str) -> tuple[str, int]:
    """The worker pool and concurrency a role runs with unless told otherwise."""
    queues_for(role)
    pool, concurrency = ROLE_POOLS[role]
    return pool, concurrency or os.cpu_count() or 2
