"""Beat's scheduler: celery-redbeat's, surviving Redis restarts and failovers.

redbeat keeps the schedule and a lock in Redis. Its ``tick()`` renews the lock and reads
the schedule with no retry (its ``retry_period`` covers neither), so one connection error,
or the lock gone with a Redis that restarted without its data, ended beat. Here a tick:

- renews the lock first, and schedules nothing unless it holds it. Lost (the key expired
  during an outage, or Redis came back empty) it is taken again only when free: a beat
  that finds another holding it waits as a second beat does. A tick stops sending once
  the lock it renewed could have expired (``SAFE_SHARE`` of its timeout), so two beats
  never schedule at once;
- after Redis answers again, writes the static schedule back when Redis lost it;
- on a connection error, schedules nothing and tries again after 0.5, 1, 2 ... s (at most
  ``beat_max_loop_interval``), logging the outage once and the recovery.

Beat still exits (non-zero: ``workers.worker.run_beat``) on any other error, and
``collector up`` starts it again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.exceptions
from kombu.exceptions import OperationalError as BrokerUnreachable
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError

log = logging.getLogger("celery.beat")

# Errors of a Redis out of reach (restarting, failing over, a network cut).
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError,
                BrokerUnreachable, ConnectionError, TimeoutError)
SAFE_SHARE = 0.5  # of the lock's timeout: a tick sends nothing later than this after renewing
FIRST_DELAY = 0.5


class CollectorScheduler(RedBeatScheduler):
    """redbeat's scheduler, whose ticks survive Redis restarts (module docstring)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self._failures = 0
        self._restore_schedule = False
        self._held_until = 0.0  # monotonic: when the lock renewed last may have expired
        self._waiting_logged = False
        super().__init__(app, **kwargs)

    # -- start ---------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Write the static schedule to Redis; waits for Redis when it is out of reach."""
        while True:
            try:
                super().setup_schedule()
                return
            except REDIS_ERRORS as exc:
                delay = self._backoff()
                log.warning("beat: Redis out of reach while writing the schedule (%s); "
                            "trying again in %.1f s", _describe(exc), delay)
                time.sleep(delay)

    # -- the loop --------------------------------------------------------------------------

    def tick(self, min: Any = min, **_kwargs: Any) -> float:  # noqa: A002 - Celery's signature
        try:
            if not self._hold_lock():
                return self.max_interval
            if self._restore_schedule or not get_redis(self.app).exists(
                    self.app.redbeat_conf.schedule_key):
                log.info("beat: writing the schedule to Redis again")
                super().setup_schedule()
                self._restore_schedule = False
            interval = self._send_due(min)
        except REDIS_ERRORS as exc:
            delay = self._backoff()
            self._restore_schedule = True  # Redis may come back empty
            if self._failures == 1:
                log.warning("beat: Redis out of reach (%s); scheduling nothing until it "
                            "answers, trying every %.1f-%.1f s", _describe(exc), delay,
                            self.max_interval)
            return delay
        if self._failures:
            log.info("beat: Redis answers again after %d failed tick(s)", self._failures)
            self._failures = 0
        return interval

    def _send_due(self, min: Any) -> float:  # noqa: A002
        remaining_times = []
        try:
            for entry in self.schedule.values():
                if self.lock_key and time.monotonic() >= self._held_until:
                    return 0  # the lock may have expired meanwhile: renew it first
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining_times.append(next_time_to_run)
        except RuntimeError:
            log.debug("beat: RuntimeError", exc_info=True)
        return min(remaining_times + [self.max_interval])

    def _hold_lock(self) -> bool:
        """Renew the lock, or take it when it is free; False while another beat holds it."""
        if not self.lock_key:
            return True
        renewed_at = time.monotonic()
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
            except LockError:  # not ours any more: expired, or Redis came back without it
                log.warning("beat: the lock in Redis is no longer ours; taking it again "
                            "if no other beat holds it")
                self.lock = None
            else:
                self._held_until = renewed_at + self.lock_timeout * SAFE_SHARE
                return True
        lock = self._new_lock()
        if not lock.acquire(blocking=False):
            if not self._waiting_logged:
                log.info("beat: another beat holds the lock; waiting for it")
                self._waiting_logged = True
            return False
        log.info("beat: Acquired lock")
        self.lock, self._waiting_logged = lock, False
        self._held_until = renewed_at + self.lock_timeout * SAFE_SHARE
        self._restore_schedule = True
        return True

    def _new_lock(self) -> Any:
        """A lock as redbeat's ``beat_init`` handler makes it (its extend sets the TTL)."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def _backoff(self) -> float:
        self._failures += 1
        return min(max(self.max_interval, FIRST_DELAY),
                   FIRST_DELAY * 2 ** min(self._failures - 1, 10))

    # -- stop ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock if Redis answers (else it expires on its own), then close."""
        try:
            super().close()
        except (*REDIS_ERRORS, LockError) as exc:
            log.warning("beat: lock not released (%s); it expires within %s s",
                        _describe(exc), self.lock_timeout)
            self.lock = None
            super(RedBeatScheduler, self).close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
