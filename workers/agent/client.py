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
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions
import redis.sentinel
from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Exchange, Queue
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError

from collector import wire
from collector.config import (
    Settings,
    authenticated_beyond_localhost,
    first_url,
    is_sentinel,
    is_tls,
    load_settings,
    redis_db,
    redis_password,
    redis_ssl_options,
    redis_transport_options,
    sentinel_hosts,
    sentinel_kwargs,
    signing_credential,
    single_url,
    ssl_options_for,
)
from collector.redaction import masked_repr
from collector.signing import OPERATOR, Credential
from workers.agent.signing import sign_messages, signed_by
from workers.agent.transport import TRANSPORTS

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


class BrokerRefused(RpcError):
    """The broker refused this client (its ACL user may not reach that queue, key or
    channel, or its user or password is no longer valid): ``error_type`` Unauthorized, as
    the Collector's own refusals."""

    def __init__(self, message: str) -> None:
        super().__init__("Unauthorized", message)


_REFUSALS = (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError)
_REFUSAL_WORDS = ("NOPERM", "no permissions", "WRONGPASS", "invalid username-password")


def broker_refusal(exc: BaseException) -> str | None:
    """What the broker said when it refused this client's user (ACL), found in ``exc`` or
    what caused it; None when ``exc`` is no such refusal."""
    seen, current = 0, exc
    while current is not None and seen < 6:
        text = str(current)
        if isinstance(current, _REFUSALS) or any(word in text for word in _REFUSAL_WORDS):
            return text[:300]
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


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
        refusal = broker_refusal(exc)
        if refusal:
            raise BrokerRefused(f"{what}, the broker refused: {refusal}") from None
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
    """The transport class for a broker URL (``redis``, ``rediss``, ``sentinel``: kombu's,
    with the fix of ``workers.agent.transport``); None for any other scheme (kombu's)."""
    return TRANSPORTS.get(url.split("://", 1)[0].lower()) if "://" in url else None


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


def make_app(broker_url: str | None = None, result_backend: str | None = None,
             credential: Credential | None = None) -> Celery:
    settings = load_settings()
    broker = authenticated_beyond_localhost(
        "broker_url", broker_url or settings.broker_url or "redis://127.0.0.1:6379/0")
    configured_backend = settings.result_backend \
        if settings.result_backend != settings.broker_url else None
    backend = single_url("result_backend", authenticated_beyond_localhost(
        "result_backend", result_backend or configured_backend
        or (broker if is_sentinel(broker) else first_url(broker))))
    app = Celery("collector-client", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        broker_transport=broker_transport_for(broker),
        result_backend=backend,
        # Sentinel (the master's name, the sentinels' password) and TLS (rediss://), from
        # the environment (collector.config).
        broker_transport_options=redis_transport_options(settings, broker),
        broker_use_ssl=ssl_options_for(settings, broker),
        redis_backend_use_ssl=ssl_options_for(settings, backend),
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_accept_content=["json"], broker_connection_retry_on_startup=True,
        task_create_missing_queues=True,
        # A result backend out of reach is BrokerUnavailable within about two seconds, not
        # after Celery's twenty reconnection attempts, one a second.
        result_backend_transport_options={"retry_policy": {
            "max_retries": 4, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
            **redis_transport_options(settings, backend)},
    )
    # Every message signed: as the node (COLLECTOR_NODE_ID / COLLECTOR_NODE_KEY), else as
    # the operator (a process holding the Collector's signing secret).
    return sign_messages(app, credential or signing_credential(settings, OPERATOR))


def redis_client(url: str | None = None, settings: Settings | None = None,
                 **options: Any) -> redis.Redis:
    """A redis-py client of a broker URL (COLLECTOR_BROKER_URL when None), as every
    Collector process reaches it: ``redis://``; ``rediss://`` with TLS, the server's
    certificate verified (COLLECTOR_REDIS_CA_FILE, COLLECTOR_REDIS_CERT_FILE/KEY_FILE); a
    ``sentinel://`` list: the master COLLECTOR_REDIS_MASTER_NAME, found through the
    sentinels again after a failover. ``options`` go to redis-py (``decode_responses``...)."""
    settings = settings or load_settings()
    url = url or settings.broker_url or "redis://127.0.0.1:6379/0"
    if is_sentinel(url):
        master = redis_transport_options(settings, url)["master_name"]
        username = urlsplit(first_url(url) or "").username
        sentinels = redis.sentinel.Sentinel(
            sentinel_hosts(url), sentinel_kwargs=sentinel_kwargs(settings),
            password=redis_password(url), db=redis_db(url),
            **({"username": unquote(username)} if username else {}), **options)
        return sentinels.master_for(master)
    if is_tls(url):
        options = {**redis_ssl_options(settings), **options}
    return redis.Redis.from_url(first_url(url), **options)


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
                 timeout: float = 30.0, sender: str | None = None,
                 credential: Credential | None = None) -> None:
        self.app = make_app(broker_url, result_backend, credential)
        self.timeout = timeout
        self.visibility_timeout = load_settings().visibility_timeout
        # Events go out as the node that signs them, unless told otherwise.
        signer = signed_by(self.app)
        self.sender = sender or (signer if signer not in (None, OPERATOR) else None)
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
            refusal = broker_refusal(exc)
            if refusal:
                raise BrokerRefused(f"{what}: not sent, the broker refused: {refusal}") \
                    from None
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


@dataclass
class _Unconfirmed:
    """An event published and not yet confirmed dispatched."""

    message: list
    routing_key: str
    first_sent: float
    last_sent: float
    wait: float = 1.0  # until the next check: 1, 2, 4 ... s, until resend_after
    next_check: float = 0.0


class _Events:
    """Events published end to end: each under a fixed event id (its Celery task id),
    published again under that id until the Collector's dispatcher has run it.

    The protocol, for any publisher (plain Celery too): publish ``events.deliver(event,
    args, sender, published_at)`` to the topic exchange ``collector.events``, routing key
    ``<event>.<sender>``, with a unique task id and a result expected (``ignore_result``
    false); until the task's result is SUCCESS (or FAILURE: parked as a dead letter) in the
    Collector's result backend, publish it again with the same task id. The dispatcher does
    an event once however many copies arrive (its ``dispatch`` receipt), and stores its
    result under the event id.

    Here the unconfirmed events are kept in memory; a background thread, running while some
    are, reads the result of each one 1, 2, 4 ... s after it was sent and publishes it again
    when still unconfirmed ``resend_after`` seconds (COLLECTOR_EVENT_RESEND_AFTER, 30) after
    it was last sent, until ``max_age`` (COLLECTOR_RESULT_EXPIRES, 1 h), then gives up with
    an error in the log. A process that exits forgets its unconfirmed events:
    ``wait_confirmed`` before exiting.
    """

    def __init__(self, client: Collector) -> None:
        settings = load_settings()
        self._client = client
        self.resend_after = settings.event_resend_after
        self.max_age = float(settings.result_expires)
        self._unconfirmed: dict[str, _Unconfirmed] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def publish(self, event: str, args: list | tuple = (), sender: str | None = None,
                event_id: str | None = None) -> str:
        """Publish an event as an agent: every subscribing role receives it once. Returns
        its event id (``event_id``, or a new one); re-published until dispatched."""
        from datetime import UTC, datetime

        sender = sender or self._client.sender or "agent"
        event_id = event_id or str(uuid.uuid4())
        message = [event, list(args), sender,
                   datetime.now(UTC).isoformat().replace("+00:00", "Z")]
        routing_key = f"{event}.{sender}"
        self._send(event_id, message, routing_key)
        now = time.monotonic()
        with self._lock:
            self._unconfirmed[event_id] = _Unconfirmed(
                message, routing_key, now, now, next_check=now + min(1.0, self.resend_after))
            if self._thread is None:
                self._thread = threading.Thread(target=self._confirm_loop, daemon=True,
                                                name="collector-events-confirm")
                self._thread.start()
        return event_id

    def _send(self, event_id: str, message: list, routing_key: str) -> str:
        return sent(f"event {message[0]}: not published", lambda: self._client.app.send_task(
            wire.EVENT_DELIVER, args=message, task_id=event_id, exchange=EVENTS_EXCHANGE,
            routing_key=routing_key, declare=[EVENTS_EXCHANGE, EVENTS_QUEUE],
            **shown_args(message)))

    def unconfirmed(self) -> list[str]:
        """The ids of the events not confirmed dispatched yet."""
        with self._lock:
            return list(self._unconfirmed)

    def wait_confirmed(self, timeout: float) -> bool:
        """Wait until every event published so far is confirmed (or given up); whether so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unconfirmed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))
        return True

    def _confirmed(self, event_id: str) -> bool:
        state = self._client.app.backend.get_task_meta(event_id).get("status")
        return state in ("SUCCESS", "FAILURE")

    def _confirm_loop(self) -> None:
        """Each event is checked 1, 2, 4 ... s after it was sent, and published again once
        ``resend_after`` has passed unconfirmed; the thread ends when none is left."""
        while True:
            time.sleep(min(0.25, self.resend_after / 4))
            now = time.monotonic()
            with self._lock:
                if not self._unconfirmed:
                    self._thread = None
                    return
                due = [(event_id, entry) for event_id, entry in self._unconfirmed.items()
                       if now >= entry.next_check]
            for event_id, entry in due:
                self._check(event_id, entry, now)

    def _check(self, event_id: str, entry: _Unconfirmed, now: float) -> None:
        try:
            if self._confirmed(event_id):
                self._forget(event_id)
                return
            if now - entry.first_sent >= self.max_age:
                log.error("event %s %s not confirmed dispatched after %gs: given up",
                          entry.message[0], event_id, self.max_age)
                self._forget(event_id)
                return
            if now - entry.last_sent >= self.resend_after:
                log.warning("event %s %s not confirmed dispatched after %gs: published again",
                            entry.message[0], event_id, now - entry.last_sent)
                self._send(event_id, entry.message, entry.routing_key)
                entry.last_sent, entry.wait = now, 1.0
            else:
                entry.wait *= 2
        except Exception as exc:  # noqa: BLE001 - the broker or backend out of reach: later
            log.warning("event %s: confirmation or re-publish failed (%s); tried again",
                        event_id, exc)
            entry.wait *= 2
        entry.next_check = min(now + entry.wait, entry.last_sent + self.resend_after)
        if entry.next_check <= now:  # a re-publish that failed: next in resend_after
            entry.next_check = now + self.resend_after

    def _forget(self, event_id: str) -> None:
        with self._lock:
            self._unconfirmed.pop(event_id, None)
            self._changed.notify_all()
