"""The process entry points of a Collector installation: a worker of one role, and beat.

``collector worker --role R`` and ``collector beat`` (``workers.cli``) call these; the
Procfile names one line per role (``workers.roles``). Every worker, whatever its role,
sweeps the outbox in a thread of its own (``tasks.worker_sweeper``): a committed job is
sent even while beat is down. Both exit non-zero when they stop on an error, so
``collector up`` (``workers.supervisor``) starts them again.
"""

from __future__ import annotations

import logging
import secrets

from collector.config import Settings
from tasks import worker_sweeper
from tasks.app import app
from workers.agent.client import run_celery
from workers.roles import pool_for, queues_for

log = logging.getLogger(__name__)


def worker_argv(role: str, settings: Settings, concurrency: int | None = None,
                pool: str | None = None, loglevel: str = "INFO",
                hostname: str | None = None) -> list[str]:
    """Celery's worker arguments for ``role`` (ValueError for an unknown role)."""
    queues = queues_for(role)
    role_pool, role_concurrency = pool_for(role)
    return [
        "worker", "-Q", ",".join(queues), "--pool", pool or role_pool,
        "--concurrency", str(concurrency or settings.worker_concurrency or role_concurrency),
        "--loglevel", loglevel, "--hostname", hostname or f"{role}.{secrets.token_hex(3)}@%h",
        "--without-gossip", "--without-mingle",
    ]


def run_worker(argv: list[str]) -> int:
    """Run a worker, its outbox sweeper started once it is ready; its exit status (not
    app.worker_main(), which drops it)."""
    worker_sweeper.install()
    return run_celery(app, argv)


def run_beat(loglevel: str = "INFO") -> int:
    """Run beat (one per installation: it waits on the lock in Redis while another runs).

    Its scheduler rides out Redis restarts (``tasks.beat_scheduler``); any other error ends
    it with status 1, never 0, so a supervisor starts it again."""
    try:
        return run_celery(app, ["beat", "--loglevel", loglevel])
    except Exception:
        log.exception("beat stopped on an error")
        return 1
