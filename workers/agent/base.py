"""What a node agent is built from: per-node job queues, job handlers, heartbeats.

    agent = Agent("hva.demo1", broker_url, endpoints=("hva-handle", "local-store-handle"))

    @agent.job("hva-handle", "run_local_store", on_failure=rollback)
    def run_local_store(ctx, instance_id):
        doc = agent.collector.rpc("hva-collector").get_instance(instance_id)
        ...
        if ctx.cancelled: return          # the job was cancelled while running

    sys.exit(agent.run())   # consume hva-handle.hva.demo1 and local-store-handle.hva.demo1

The library reports every job to the Collector's ledger: before running it asks
``jobqueue-proxy.running`` (a finished, cancelled or already-running job is skipped, so a
redelivered message never runs twice), heartbeats the job while it runs, and finishes it
with ``finish_success`` or ``finish_fail`` (the Collector pushes it again while retries
remain). The failure hook runs before ``finish_fail``. Jobs submitted from a handler join
the running job's session. The node itself heartbeats ``node-collector.notify``.

Reports survive transient failures (no answer in time, ``TransientError``, the broker
unreachable, a COMMIT cut: ``CommitOutcomeUnknown``): each is retried with backoff, ``running`` for up to a minute (then the
message goes back to the queue, the job not run), a finish for up to
``report_retry_for`` seconds (5 min) while the job keeps heartbeating, so the reaper does
not send it again meanwhile. The Collector answers a repeated report as it did the first.
A handler that fails the same way (a Collector call meets ``TransientError`` or
``CommitOutcomeUnknown``, no answer, the broker unreachable) is run again with backoff (1, 2, 4 ... s, at most 30) for up to
``job_retry_for`` seconds (COLLECTOR_JOB_RETRY_FOR, 10 min), the job still running and
heartbeating; only what still fails then, or fails otherwise, finishes it as failed.
Handlers are run again from the start: they must tolerate a repeat, as any redelivery.

A copy of a job this agent does not run (a second copy sent by the outbox sweep, a
redelivery; the ledger says finished, cancelled or running elsewhere, or the copy arrived
while this process runs the job) is dropped with Celery's ``Ignore``: no result is stored
and no ``link`` callback is sent, so neither the ledger nor the result backend can take a
skipped copy for the job's success. A copy of a job this process already ran with success
is not run again either, even when the ledger lets it: when the Collector could not be
reached for longer than the job heartbeat timeout (a broker failover), the reaper sends the
job again before its success is reported; the copy reports that success again instead
(the last ``DONE_REMEMBERED`` successes are remembered; a failed job may run again, as a
retry would).

An agent's unacknowledged messages are kept in its node's own Redis hash, with a
visibility timeout of twice its longest job (``longest_job``, COLLECTOR_AGENT_LONGEST_JOB,
3 h): a job is not redelivered while it still runs, and no other application's shorter
timeout can redeliver it.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Ignore, Reject
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from collector import wire
from collector.config import load_settings
from collector.jobcontext import CurrentJob, current_job
from workers.agent.broker_watch import watch_broker
from workers.agent.client import Collector, RpcError, is_transport_failure, make_app, run_celery

log = logging.getLogger(__name__)

# Answers after which the same report may succeed: nothing in time, the database busy or
# down, the broker gone (as rebuilt from the result backend), a COMMIT cut (the Collector
# answers a repeated report as it did the first, so repeating it tells the outcome).
RETRYABLE_REPORT_ERRORS = frozenset({"RpcTimeout", "TransientError", "OperationalError",
                                     "ConnectionError", "TimeoutError",
                                     "CommitOutcomeUnknown"})
RUNNING_REPORT_RETRY_FOR = 60.0
# Successful jobs a process remembers, so that a copy the reaper sent meanwhile is not run.
DONE_REMEMBERED = 10_000
# A handler's failures after which running it again may succeed: the same, and a call or a
# publish that could not reach the broker.
RETRYABLE_JOB_ERRORS = RETRYABLE_REPORT_ERRORS | {"BrokerUnavailable"}
JOB_RETRY_FIRST_DELAY, JOB_RETRY_LONGEST_DELAY = 1.0, 30.0

JobHandler = Callable[..., Any]
FailureHook = Callable[["JobContext", BaseException], None]


@dataclass
class JobContext:
    """What a job handler knows about the job it runs."""

    job_id: str
    session_id: str
    name: str
    node_id: str
    worker_id: str
    args: tuple
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the Collector says the job is no longer this worker's (cancelled)."""
        return self._cancel.is_set()


class Agent:
    def __init__(self, node_id: str, broker_url: str | None = None,
                 result_backend: str | None = None, endpoints: tuple[str, ...] = (wire.HVA_HANDLE,),
                 heartbeat_interval: float = 10.0, job_heartbeat_interval: float | None = None,
                 rpc_timeout: float = 30.0, longest_job: float | None = None,
                 report_retry_for: float = 300.0, job_retry_for: float | None = None) -> None:
        settings = load_settings()
        self.node_id = node_id
        self.endpoints = endpoints
        self.worker_id = f"{node_id}:{os.getpid()}:{secrets.token_hex(3)}"
        self.boot_token = secrets.token_hex(5)
        self.heartbeat_interval = heartbeat_interval
        self.job_heartbeat_interval = job_heartbeat_interval or settings.agent_job_heartbeat
        self.longest_job = longest_job or settings.agent_longest_job
        self.report_retry_for = report_retry_for
        self.job_retry_for = settings.job_retry_for if job_retry_for is None else job_retry_for
        self.collector = Collector(broker_url, result_backend, timeout=rpc_timeout,
                                   sender=node_id)
        self.app: Celery = make_app(broker_url, result_backend)
        self.app.conf.update(
            task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
            # No remote control, no task events: a node's broker user reaches neither the
            # pidbox nor the event channels (workers.broker_acl).
            worker_enable_remote_control=False, worker_send_task_events=False,
            worker_hijack_root_logger=False, task_default_queue=self.queues[0],
            # The node's own options over make_app's (a Sentinel list's master name...).
            broker_transport_options={**self.app.conf.broker_transport_options,
                                      **self.transport_options()},
        )
        watch_broker(self.app, settings.agent_broker_check)
        self._stop = threading.Event()
        self._running: set[str] = set()
        self._succeeded: OrderedDict[str, Any] = OrderedDict()  # job id -> its result
        self._running_lock = threading.Lock()

    def transport_options(self) -> dict[str, Any]:
        """The node's own unacked hash, visibility timeout twice the longest job."""
        unacked = f"unacked.{self.node_id}"
        visibility = int(2 * self.longest_job)
        return {"visibility_timeout": visibility, "unacked_key": unacked,
                "unacked_index_key": f"{unacked}.index", "unacked_mutex_key": f"{unacked}.mutex",
                # Look for messages past their timeout (a job whose worker died) often
                # enough that one comes back soon after its timeout, however long that is.
                "unacked_restore_interval": max(1, min(60, visibility // 4)),
                "unacked_restore_throttle": 1,
                "socket_keepalive": True, "health_check_interval": 25}

    @property
    def queues(self) -> list[str]:
        return [f"{endpoint}.{self.node_id}" for endpoint in self.endpoints]

    def job(self, endpoint: str, name: str,
            on_failure: FailureHook | None = None) -> Callable[[JobHandler], JobHandler]:
        """Declare the handler of job ``<endpoint>.<name>`` (``handler(ctx, *args)``)."""
        if endpoint not in self.endpoints:
            raise ValueError(f"{endpoint!r} is not one of this agent's endpoints")

        def register(handler: JobHandler) -> JobHandler:
            agent = self

            @self.app.task(name=f"{endpoint}.{name}", bind=True, typing=False)
            def run(task: Task, *args: Any) -> Any:
                return agent._run_job(task.request.id, name, handler, on_failure, args)

            return handler

        return register

    def _run_job(self, job_id: str, name: str, handler: JobHandler,
                 on_failure: FailureHook | None, args: tuple) -> Any:
        with self._running_lock:
            if job_id in self._running:  # a redelivered copy of a job this process runs
                log.info("%s: job %s (%s) already runs here: copy dropped", self.node_id,
                         job_id, name)
                # No result and no link callback: the copy running here reports the job.
                raise Ignore()
            self._running.add(job_id)
        try:
            return self._run_job_once(job_id, name, handler, on_failure, args)
        finally:
            self._ran(job_id)

    def _ran(self, job_id: str) -> None:
        """The handler is done: a copy of the job sent again (a retry) may run here."""
        with self._running_lock:
            self._running.discard(job_id)

    def _run_job_once(self, job_id: str, name: str, handler: JobHandler,
                      on_failure: FailureHook | None, args: tuple) -> Any:
        try:
            decision = self._report("running", job_id, self.worker_id,
                                    retry_for=RUNNING_REPORT_RETRY_FOR)
        except RpcError as exc:
            if exc.error_type not in RETRYABLE_REPORT_ERRORS:
                raise  # refused (an unknown job...): the task fails, as any refusal
            self._not_started(job_id, name, exc)
        except (KombuError, RedisError, OSError) as exc:
            self._not_started(job_id, name, exc)
        if not decision["run"]:
            log.info("%s: skipping job %s (%s): %s", self.node_id, job_id, name,
                     decision["reason"])
            # Not run here: whatever the job's outcome is, this copy must not be taken for it
            # (a stored SUCCESS would be the job's in the result backend and its link's).
            raise Ignore()
        with self._running_lock:
            done, result = job_id in self._succeeded, self._succeeded.get(job_id)
        if done:  # sent again before its success reached the ledger (the reaper)
            log.info("%s: job %s (%s) already ran here with success: not run again, its "
                     "success reported again", self.node_id, job_id, name)
            self._finish(job_id, "finish_success", result)
            raise Ignore()
        ctx = JobContext(job_id, decision["job"]["session_id"] or job_id, name, self.node_id,
                         self.worker_id, args)
        beating = threading.Thread(target=self._beat_job, args=(ctx,), daemon=True)
        token = current_job.set(CurrentJob(job_id, ctx.session_id))
        beating.start()
        try:
            try:
                result = self._run_handler(ctx, handler, args)
            except Exception as exc:
                self._ran(job_id)
                if on_failure is not None:
                    try:
                        on_failure(ctx, exc)
                    except Exception:  # the report must still reach the ledger
                        log.exception("%s: failure hook of %s raised", self.node_id, job_id)
                self._finish(job_id, "finish_fail",
                             {"message": str(exc), "error_type": type(exc).__name__})
                raise
            self._ran(job_id)
            reported = _jsonable(result)
            with self._running_lock:
                self._succeeded[job_id] = reported
                while len(self._succeeded) > DONE_REMEMBERED:
                    self._succeeded.popitem(last=False)
            self._finish(job_id, "finish_success", reported)
            return result
        finally:
            ctx._done.set()  # the job heartbeats until its finish is reported
            current_job.reset(token)

    def _run_handler(self, ctx: JobContext, handler: JobHandler, args: tuple) -> Any:
        """``handler(ctx, *args)``, run again with backoff while it fails with a retryable
        error, for up to ``job_retry_for`` seconds and unless the job is cancelled."""
        deadline = time.monotonic() + self.job_retry_for
        delay = JOB_RETRY_FIRST_DELAY
        while True:
            try:
                return handler(ctx, *args)
            except Exception as exc:
                if not retryable_job_error(exc) or ctx.cancelled or \
                        time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: job %s (%s) failed (%s); running it again in %gs",
                            self.node_id, ctx.job_id, ctx.name, exc, delay)
                error = exc
            if ctx._cancel.wait(delay):  # cancelled meanwhile: it fails as it stands
                raise error
            delay = min(delay * 2, JOB_RETRY_LONGEST_DELAY)

    def _not_started(self, job_id: str, name: str, exc: Exception) -> NoReturn:
        """The ledger could not be asked: run nothing; the message goes back to the queue."""
        log.warning("%s: job %s (%s) not started, the Collector did not answer: %s",
                    self.node_id, job_id, name, exc)
        raise Reject(str(exc), requeue=True) from None

    def _finish(self, job_id: str, method: str, message: Any) -> None:
        try:
            self._report(method, job_id, message)
        except RpcError as exc:
            if exc.error_type == "AlreadyTerminated":  # an earlier try got through, or the
                return                                # job was finished (cancelled) meanwhile
            log.error("%s: %s of %s refused: %s", self.node_id, method, job_id, exc)
        except Exception as exc:  # given up: the reaper sends the job again
            log.error("%s: %s of %s not reported (%s): the Collector will send the job again",
                      self.node_id, method, job_id, exc)

    def _report(self, method: str, *args: Any, retry_for: float | None = None) -> Any:
        """``jobqueue-proxy.<method>(*args)``, retried with backoff through transient errors."""
        deadline = time.monotonic() + (self.report_retry_for if retry_for is None else retry_for)
        delay = 0.5
        while True:
            try:
                return self.collector.call(wire.JOBQUEUE_PROXY, method, *args)
            except RpcError as exc:
                if exc.error_type not in RETRYABLE_REPORT_ERRORS:
                    raise
                error: Exception = exc
            except (KombuError, RedisError, OSError) as exc:  # the broker unreachable
                error = exc
            if time.monotonic() + delay > deadline:
                raise error
            log.warning("%s: %s%r failed (%s); again in %gs", self.node_id, method, args[:1],
                        error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)

    def _beat_job(self, ctx: JobContext) -> None:
        while not ctx._done.wait(self.job_heartbeat_interval):
            try:
                if not self.collector.call(wire.JOBQUEUE_PROXY, "heartbeat", ctx.job_id,
                                           self.worker_id, timeout=10):
                    ctx._cancel.set()
                    return
            except Exception as exc:  # a missed beat is retried next interval
                log.warning("%s: job heartbeat of %s failed: %s", self.node_id, ctx.job_id, exc)

    def publish(self, event: str, args: list | tuple = (), event_id: str | None = None) -> str:
        """Publish an event from this node; returns its event id. Published again under that
        id until the Collector has dispatched it (``workers.agent.client._Events``)."""
        return self.collector.events.publish(event, list(args), sender=self.node_id,
                                             event_id=event_id)

    def heartbeat(self) -> None:
        """One node heartbeat (``node-collector.notify``), fire-and-forget."""
        self.collector.oneshot(wire.NODE_COLLECTOR).notify(self.node_id, self.boot_token)

    def _heartbeat_loop(self) -> None:
        while True:
            try:
                self.heartbeat()
            except Exception as exc:
                log.warning("%s: heartbeat failed: %s", self.node_id, exc)
            if self._stop.wait(self.heartbeat_interval):
                return

    def run(self, concurrency: int = 2, loglevel: str = "INFO") -> int:
        """Heartbeat and consume this node's job queues until stopped; returns the worker's
        exit status (non-zero after an unrecoverable error: exit with it)."""
        threading.Thread(target=self._heartbeat_loop, daemon=True).start()
        try:
            return run_celery(self.app, [
                "worker", "-Q", ",".join(self.queues), "--pool", "threads",
                "--concurrency", str(concurrency), "--loglevel", loglevel,
                "--hostname", f"{self.node_id}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat",
            ])
        finally:
            self._stop.set()


def retryable_job_error(exc: BaseException) -> bool:
    """Whether a handler that failed with ``exc`` may succeed if run again: a Collector call
    answered ``TransientError`` or nothing in time, or the broker out of reach."""
    if isinstance(exc, RpcError):
        return exc.error_type in RETRYABLE_JOB_ERRORS
    return isinstance(exc, (KombuError, RedisError)) or is_transport_failure(exc)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)
