"""Every Collector worker re-sends what is owed, whether beat runs or not.

A committed job or event must not depend on one beat process being alive: a thread in every
``collector worker`` process (every role, ``workers.worker.run_worker``) runs the passes of
``PASSES`` every COLLECTOR_OUTBOX_SWEEP_AFTER seconds (at least 1 s). The first is the
outbox sweep (``tasks.relay.sweep``); others register theirs with ``register_pass(fn)``: a
function of no arguments, safe to run in several processes at once and again after a crash
(rows are claimed, as the sweep claims them with ``claimed_until`` and ``SKIP LOCKED``).

The loop never dies: a pass that raises (the database or the broker out of reach) is
logged, once per outage, and tried again after a growing delay (2, 4, 8 ... periods, at
most a minute), the other passes going on meanwhile. Workers start out of step (a random
first delay), and on SQLite the outbox pass first looks, with no write lock, for a row to
send: a sweep with nothing to do takes no write lock. COLLECTOR_WORKER_SWEEP=0 turns the
thread off (beat's ``maintenance.sweep_outbox`` still runs).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import select

from collector.config import load_settings
from collector.db import unit_of_work
from collector.models.outbox import OutboxMessage
from collector.timeutil import utcnow
from tasks import relay
from tasks.app import app

log = logging.getLogger(__name__)

SWEEP_LIMIT = 500  # rows per claim
MAX_BATCHES = 20  # claims per pass while each comes back full
MAX_BACKOFF = 60.0  # seconds between tries of a pass that keeps failing


def sweep_outbox() -> int:
    """Publish outbox rows left unsent for COLLECTOR_OUTBOX_SWEEP_AFTER seconds; how many."""
    older_than = load_settings().outbox_sweep_after
    if not _rows_waiting(older_than):
        return 0
    publisher, sent = relay.publisher(app.conf.broker_url), 0
    for _ in range(MAX_BATCHES):
        batch = relay.sweep(publisher, older_than=older_than, limit=SWEEP_LIMIT)
        sent += batch
        if batch < SWEEP_LIMIT:
            break
    return sent


def _rows_waiting(older_than: float) -> bool:
    """Whether any row waits for the sweep (read only: no write lock on SQLite)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    with unit_of_work(readonly=True) as session:
        return session.scalar(select(OutboxMessage.id).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
            OutboxMessage.created_at <= cutoff).limit(1)) is not None


PASSES: list[Callable[[], object]] = [sweep_outbox]


def register_pass(fn: Callable[[], object]) -> Callable[[], object]:
    """Run ``fn()`` in every worker's loop from now on (once however often registered);
    returns ``fn``, so it can decorate."""
    if fn not in PASSES:
        PASSES.append(fn)
    return fn


class _Schedule:
    """When one pass runs next, and its failures in a row."""

    def __init__(self, first_at: float) -> None:
        self.next_at, self.failures = first_at, 0


class Sweeper(threading.Thread):
    """The loop: each pass of ``passes`` (read at every round, so passes registered later
    run too) every ``every`` seconds; a failing pass backs off, the others go on."""

    def __init__(self, every: float, passes: list[Callable[[], object]] | None = None,
                 max_backoff: float = MAX_BACKOFF) -> None:
        super().__init__(name="collector-sweeper", daemon=True)
        self.every, self.max_backoff = every, max_backoff
        self.passes = PASSES if passes is None else passes
        self.stopping = threading.Event()
        self._schedules: dict[Callable[[], object], _Schedule] = {}
        self._first_at = time.monotonic() + random.uniform(0, every)  # workers out of step

    def run(self) -> None:
        log.info("outbox sweep (and %d other pass(es)) every %g s in this worker",
                 max(0, len(self.passes) - 1), self.every)
        while not self.stopping.is_set():
            try:
                wait = self.run_due(time.monotonic())
            except Exception:  # noqa: BLE001 - the loop itself must never end
                log.exception("worker sweeper: unexpected error; going on")
                wait = self.every
            self.stopping.wait(max(0.05, wait))

    def run_due(self, now: float) -> float:
        """Run every pass that is due; seconds until the next one is."""
        for fn in list(self.passes):
            schedule = self._schedules.setdefault(fn, _Schedule(self._first_at))
            if schedule.next_at <= now and not self.stopping.is_set():
                self._run(fn, schedule)
        soonest = min((s.next_at for s in self._schedules.values()), default=now + self.every)
        return soonest - time.monotonic()

    def _run(self, fn: Callable[[], object], schedule: _Schedule) -> None:
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - an outage: logged, tried again later
            schedule.failures += 1
            delay = min(self.max_backoff, self.every * 2 ** min(schedule.failures, 16))
            if schedule.failures == 1:
                log.warning("worker sweeper: %s failed (%s: %s); trying again in %.0f s, "
                            "then less often while it fails", name, type(exc).__name__,
                            str(exc)[:300], delay, exc_info=True)
            else:
                log.debug("worker sweeper: %s failed again (%s)", name, exc)
            schedule.next_at = time.monotonic() + delay
            return
        if schedule.failures:
            log.info("worker sweeper: %s works again after %d failure(s)", name,
                     schedule.failures)
            schedule.failures = 0
        if result:
            log.info("worker sweeper: %s: %s", name, result)
        schedule.next_at = time.monotonic() + self.every

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)


_sweeper: Sweeper | None = None
_lock = threading.Lock()


def start(every: float | None = None) -> Sweeper | None:
    """Start this process's sweeper (once; None when COLLECTOR_WORKER_SWEEP=0)."""
    global _sweeper
    settings = load_settings()
    if not settings.worker_sweep:
        log.info("worker sweeper off (COLLECTOR_WORKER_SWEEP=0): beat alone sweeps the outbox")
        return None
    with _lock:
        if _sweeper is None or not _sweeper.is_alive():
            _sweeper = Sweeper(every or max(1.0, settings.outbox_sweep_after))
            _sweeper.start()
        return _sweeper


def stop() -> None:
    global _sweeper
    with _lock:
        sweeper, _sweeper = _sweeper, None
    if sweeper is not None:
        sweeper.stop()


def _on_ready(**_kw: Any) -> None:
    start()


def _on_shutdown(**_kw: Any) -> None:
    stop()


def install() -> None:
    """Start the sweeper in this worker process once its consumer is ready (after a prefork
    pool has forked its children), and stop it when the worker shuts down."""
    worker_ready.connect(_on_ready, weak=False, dispatch_uid="collector-worker-sweeper")
    worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="collector-worker-sweeper")
