"""What an agent imports to talk to the Collector.

    collector = Collector("redis://127.0.0.1:6379/0")
    doc = collector.rpc("hva-collector").get_instance("i-abc12345")      # sync, with timeout
    collector.oneshot("hva-collector").update_instance(inst, {"status": "online"})
    collector.events.publish("hva/instance_started", [inst], sender="hva.demo1")

Errors come back typed: ``RpcError.error_type`` is the Collector's error class name
(``UnknownInstanceID``, ``InvalidArgument``, ...); a call with no answer in time raises
``RpcTimeout``. Only JSON travels; nothing here needs the Collector's database.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Exchange, Queue

from collector.config import authenticated_beyond_localhost, first_url, load_settings, single_url

EVENTS_EXCHANGE = Exchange("collector.events", type="topic", durable=True)
# The Collector's event dispatcher queue, bound to every event from every sender. Publishers
# declare it, so an event published before any Collector worker started is kept, not dropped.
EVENTS_QUEUE = Queue("events", EVENTS_EXCHANGE, routing_key="#", durable=True)


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


def error_from_exception(exc: BaseException) -> RpcError:
    """Rebuild the typed error from what the result backend gave back."""
    if isinstance(exc, RpcError):
        return exc
    message = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return RpcError(type(exc).__name__, message)


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
        result_backend=backend,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_accept_content=["json"], broker_connection_retry_on_startup=True,
        task_create_missing_queues=True,
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
        result = self.app.send_task(f"{endpoint}.{method}", args=list(args), queue=endpoint,
                                    expires=limit)
        try:
            return result.get(timeout=limit, propagate=True, disable_sync_subtasks=False)
        except CeleryTimeout:
            raise RpcTimeout(f"{endpoint}.{method}: no answer within {limit:g}s") from None
        except Exception as exc:  # the rebuilt remote exception
            raise error_from_exception(exc) from None
        finally:
            result.forget()

    def cast(self, endpoint: str, method: str, *args: Any) -> str:
        """Send ``endpoint.method(*args)`` without waiting; returns the message id."""
        result = self.app.send_task(f"{endpoint}.{method}", args=list(args), queue=endpoint,
                                    ignore_result=True)
        return result.id

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
        return self._client.call("jobqueue-proxy", "push_job", queue, job_name, list(args),
                                 resource_id, retry_max, parent.job_id if parent else None,
                                 timeout=timeout)


class _Events:
    def __init__(self, client: Collector) -> None:
        self._client = client

    def publish(self, event: str, args: list | tuple = (), sender: str | None = None) -> str:
        """Publish an event as an agent: every subscribing role receives it once."""
        from datetime import UTC, datetime

        sender = sender or self._client.sender or "agent"
        result = self._client.app.send_task(
            "events.deliver",
            args=[event, list(args), sender, datetime.now(UTC).isoformat().replace("+00:00", "Z")],
            exchange=EVENTS_EXCHANGE, routing_key=f"{event}.{sender}", ignore_result=True,
            declare=[EVENTS_EXCHANGE, EVENTS_QUEUE],
        )
        return result.id
