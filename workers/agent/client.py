"""What an agent imports to talk to the Collector.

    collector = Collector("redis://127.0.0.1:6379/0")
    doc = collector.rpc("hva-collector").get_instance("i-abc12345")      # sync, with timeout
    collector.oneshot("hva-collector").update_instance(inst, {"status": "online"})
    collector.events.publish("hva/instance_started", [inst], sender="hva.demo1")

Errors come back typed: ``RpcError.error_type`` is the Collector's error class name
(``UnknownInstanceID``, ``InvalidArgument``, ``TransientError`` = retry later, ...); a call
with no answer in time raises ``RpcTimeout``, and a broker or result backend that cannot be
reached ``BrokerUnavailable`` (never a raw kombu or redis error). A call's message expires
with it (and never later than COLLECTOR_VISIBILITY_TIMEOUT), so a call its caller gave up
on is not run later. Only JSON travels; nothing here needs the Collector's database. What
Flower and the logs show of the arguments has sensitive values masked
(``collector.redaction``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis.exceptions
from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Exchange, Queue
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError

from collector import wire
from collector.config import authenticated_beyond_localhost, first_url, load_settings, single_url
from collector.redaction import masked_repr

log = logging.getLogger(__name__)

EVENTS_EXCHANGE = Exchange(wire.EVENTS_EXCHANGE, type="topic", durable=True)
# The Collector's event dispatcher queue, bound to every event from every sender. Publishers
# declare it, so an event published before any Collector worker started is kept, not dropped.
EVENTS_QUEUE = Queue(wire.EVENTS, EVENTS_EXCHANGE, routing_key="#", durable=True)


class RpcError(Exception):
    """A Collector call answered with an error."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class RpcTimeout(RpcError):
    """No answer within the timeout (the request expires unprocessed)."""

    def __init__(self, message: str) -> None:
        super().__init__("RpcTimeout", message)


class BrokerUnavailable(RpcError):
    """The broker or the result backend cannot be reached: the call was not sent, or its
    answer cannot be read (it may have run). Safe to retry a read; check before repeating a
    write."""

    def __init__(self, message: str) -> None:
        super().__init__("BrokerUnavailable", message)


# What the transport raises when the broker or the result backend is out of reach.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    ConnectionError, TimeoutError,
)


def is_transport_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Celery wraps a result backend that stays out of
    reach in a RuntimeError) says the broker or the result backend cannot be reached."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, TRANSPORT_ERRORS):
            return True
        current, seen = current.__cause__, seen + 1
    return False


def sent(what: str, send: Callable[[], Any]) -> str:
    """The id of the message ``send()`` published; BrokerUnavailable (saying ``what``) when
    the broker cannot be reached."""
    try:
        return send().id
    except Exception as exc:
        if not is_transport_failure(exc):
            raise
        raise BrokerUnavailable(f"{what}, the broker cannot be reached "
                                f"({type(exc).__name__})") from None


def shown_args(args: list | tuple) -> dict[str, str]:
    """The ``argsrepr``/``kwargsrepr`` send options: the arguments with secrets masked."""
    return {"argsrepr": masked_repr(list(args)), "kwargsrepr": "{}"}


def error_from_exception(exc: BaseException) -> RpcError:
    """Rebuild the typed error from what the result backend gave back."""
    if isinstance(exc, RpcError):
        return exc
    message = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return RpcError(type(exc).__name__, message)


def broker_transport_for(url: str) -> str | None:
    """The transport class for a broker URL: ours for ``redis://``, else kombu's choice."""
    return "workers.agent.transport:RedisTransport" if url.startswith("redis://") else None


def run_celery(app: Celery, argv: list[str]) -> int:
    """Run the celery command ``argv`` (``["worker", ...]``) of ``app``; its exit status.

    ``app.worker_main()`` and ``app.start()`` lose the status: a worker that stopped on an
    "Unrecoverable error" would exit 0, and a supervisor that restarts failed processes
    would leave it dead.
    """
    from celery.bin.celery import celery as command

    command.params[0].default = app  # as app.start() does
    try:
        status = command.main(args=argv, standalone_mode=False)
    except Exception as exc:  # click's Exit, where click raises it instead of returning
        if not hasattr(exc, "exit_code"):
            raise
        status = exc.exit_code
    finally:
        command.params[0].default = None
    return status if isinstance(status, int) else 0


def make_app(broker_url: str | None = None, result_backend: str | None = None) -> Celery:
    settings = load_settings()
    broker = authenticated_beyond_localhost(
        "broker_url", broker_url or settings.broker_url or "redis://127.0.0.1:6379/0")
    configured_backend = settings.result_backend \
        if settings.result_backend != settings.broker_url else None
    backend = single_url("result_backend", authenticated_beyond_localhost(
        "result_backend", result_backend or configured_backend or first_url(broker)))
    app = Celery("collector-client", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        broker_transport=broker_transport_for(broker),
        result_backend=backend,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_accept_content=["json"], broker_connection_retry_on_startup=True,
        task_create_missing_queues=True,
        # A result backend out of reach is BrokerUnavailable within about two seconds, not
        # after Celery's twenty reconnection attempts, one a second.
        result_backend_transport_options={"retry_policy": {
            "max_retries": 4, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}},
    )
    return app


class _MethodProxy:
    def __init__(self, client: Collector, endpoint: str, oneshot: bool, timeout: float | None):
        self._client, self._endpoint = client, endpoint
        self._oneshot, self._timeout = oneshot, timeout

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any) -> Any:
            if self._oneshot:
                return self._client.cast(self._endpoint, method, *args)
            return self._client.call(self._endpoint, method, *args, timeout=self._timeout)

        call.__name__ = method
        return call


class Collector:
    """A connection to the Collector's endpoints, jobs and events."""

    def __init__(self, broker_url: str | None = None, result_backend: str | None = None,
                 timeout: float = 30.0, sender: str | None = None) -> None:
        self.app = make_app(broker_url, result_backend)
        self.timeout = timeout
        self.visibility_timeout = load_settings().visibility_timeout
        self.sender = sender
        self.events = _Events(self)
        self.jobs = _Jobs(self)

    def rpc(self, endpoint: str, timeout: float | None = None) -> Any:
        """A proxy whose methods are synchronous calls of ``endpoint``."""
        return _MethodProxy(self, endpoint, oneshot=False, timeout=timeout)

    def oneshot(self, endpoint: str) -> Any:
        """A proxy whose methods are fire-and-forget calls of ``endpoint``."""
        return _MethodProxy(self, endpoint, oneshot=True, timeout=None)

    def call(self, endpoint: str, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``endpoint.method(*args)`` and wait for the committed answer."""
        limit = self.timeout if timeout is None else timeout
        what = wire.task(endpoint, method)
        # A message expires with its call, and never later than the Collector's visibility
        # timeout: one a killed worker held comes back expired, so it never runs twice.
        expires = min(limit, self.visibility_timeout)
        try:
            result = self.app.send_task(what, args=list(args), queue=endpoint, expires=expires,
                                        **shown_args(args))
        except EncodeError as exc:
            raise RpcError("InvalidArgument", f"{what}: the arguments are not JSON ({exc})") \
                from None
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise BrokerUnavailable(f"{what}: not sent, the broker or the result backend "
                                    f"cannot be reached ({type(exc).__name__})") from None
        try:
            return result.get(timeout=limit, propagate=True, disable_sync_subtasks=False)
        except CeleryTimeout:
            raise RpcTimeout(f"{what}: no answer within {limit:g}s") from None
        except TaskRevokedError:  # expired before a worker could take it
            raise RpcTimeout(f"{what}: not taken within {expires:g}s") from None
        except Exception as exc:  # the rebuilt remote exception, or the transport failing
            if is_transport_failure(exc) and not isinstance(exc, RpcError):
                raise BrokerUnavailable(f"{what}: sent, but its answer cannot be read: the "
                                        f"result backend cannot be reached") from None
            raise error_from_exception(exc) from None
        finally:
            try:
                result.forget()
            except Exception:  # noqa: BLE001 - the result expires on its own
                pass

    def cast(self, endpoint: str, method: str, *args: Any) -> str:
        """Send ``endpoint.method(*args)`` without waiting; returns the message id."""
        return sent(f"{endpoint}.{method}: not sent", lambda: self.app.send_task(
            wire.task(endpoint, method), args=list(args), queue=endpoint, ignore_result=True,
            **shown_args(args)))

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Jobs:
    def __init__(self, client: Collector) -> None:
        self._client = client

    def submit(self, queue: str, job_name: str, *args: Any, resource_id: str | None = None,
               retry_max: int = 0, timeout: float | None = None) -> str:
        """Submit a job to a node queue through the Collector; returns its ``job-...`` id.

        The Collector records it in the job ledger and sends it after its commit, so a job
        acknowledged here is never lost. Submitted while running a job (agent library), it
        joins that job's session.
        """
        from collector.jobcontext import current_job

        parent = current_job.get()
        return self._client.call(wire.JOBQUEUE_PROXY, "push_job", queue, job_name, list(args),
                                 resource_id, retry_max, parent.job_id if parent else None,
                                 timeout=timeout)


class _Events:
    def __init__(self, client: Collector) -> None:
        self._client = client

    def publish(self, event: str, args: list | tuple = (), sender: str | None = None) -> str:
        """Publish an event as an agent: every subscribing role receives it once."""
        from datetime import UTC, datetime

        sender = sender or self._client.sender or "agent"
        message = [event, list(args), sender,
                   datetime.now(UTC).isoformat().replace("+00:00", "Z")]
        return sent(f"event {event}: not published", lambda: self._client.app.send_task(
            wire.EVENT_DELIVER, args=message, exchange=EVENTS_EXCHANGE,
            routing_key=f"{event}.{sender}", ignore_result=True,
            declare=[EVENTS_EXCHANGE, EVENTS_QUEUE], **shown_args(message)))
