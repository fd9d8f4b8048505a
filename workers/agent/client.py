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
import uuid
from time import monotonic, time
from typing import Any

import redis.exceptions
from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Exchange, Queue
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ConnectionError as RedisConnectionError

from collector.config import authenticated_beyond_localhost, first_url, load_settings, single_url
from collector.redaction import masked_repr

log = logging.getLogger(__name__)

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
    return f"{__name__}:RedisTransport" if url.startswith("redis://") else None


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
        what = f"{endpoint}.{method}"
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
        try:
            result = self.app.send_task(f"{endpoint}.{method}", args=list(args),
                                        queue=endpoint, ignore_result=True, **shown_args(args))
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise BrokerUnavailable(f"{endpoint}.{method}: not sent, the broker cannot be "
                                    f"reached ({type(exc).__name__})") from None
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
        message = [event, list(args), sender,
                   datetime.now(UTC).isoformat().replace("+00:00", "Z")]
        try:
            result = self._client.app.send_task(
                "events.deliver", args=message, exchange=EVENTS_EXCHANGE,
                routing_key=f"{event}.{sender}", ignore_result=True,
                declare=[EVENTS_EXCHANGE, EVENTS_QUEUE], **shown_args(message),
            )
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise BrokerUnavailable(f"event {event}: not published, the broker cannot be "
                                    f"reached ({type(exc).__name__})") from None
        return result.id


# --- The Redis transport: a hand-over a kill cannot interrupt ----------------------------
#
# kombu's Redis transport, with a hand-over from the queue to the consumer that a kill
# cannot interrupt.
#
# kombu takes a message with ``BRPOP`` and then records it as unacknowledged (a hash the
# visibility timeout restores from). Between the two the message exists only in the
# worker's socket: a worker killed in that instant loses it. Here the message is moved
# instead of popped, by the Redis server and in one step, from the queue to a list of this
# channel's own (``LMOVE``/``BLMOVE``, Redis 6.2+), then recorded as unacknowledged and
# removed from that list in one step (a script). Whenever the worker dies, the message is
# in the queue, in its in-flight list or in the unacknowledged hash; in-flight lists of a
# channel silent for longer than the visibility timeout go back to their queues, as the
# unacknowledged hash does.
#
# One ``BLMOVE`` waits on one list, where ``BRPOP`` waits on several: a channel first moves
# from the first non-empty of all its lists (one script, no wait), then waits on one (the
# queue that last had a message): on its own queue for up to a second (a queue's priority
# lists are read at every sweep), and for at most ``MULTI_QUEUE_WAIT`` when it consumes
# several queues, so a message on the others waits at most that long (rounded up to a
# tick of the Redis clock).

# Seconds a channel of several queues waits on one of them. Redis ends a wait on its clock
# tick (``hz``: every 100 ms by default, 10 ms with ``hz 100`` as the embedded Redis runs).
MULTI_QUEUE_WAIT = 0.01
HEARTBEAT_EVERY = 5.0  # seconds between a channel's marks of its in-flight lists as alive

# KEYS: the index of in-flight lists, then (queue list, in-flight list) pairs.
# ARGV[1]: now (mark the in-flight lists alive) or "". What is left in this channel's own
# in-flight lists (a reply it could not read) goes back to its queue first.
_SWEEP = """
if ARGV[1] ~= '' then
  for i = 3, #KEYS, 2 do redis.call('ZADD', KEYS[1], ARGV[1], KEYS[i]) end
end
for i = 2, #KEYS, 2 do
  while redis.call('LMOVE', KEYS[i + 1], KEYS[i], 'LEFT', 'RIGHT') do end
end
for i = 2, #KEYS, 2 do
  local item = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'RIGHT', 'LEFT')
  if item then return {KEYS[i], item} end
end
return false
"""

# KEYS: in-flight list, unacked hash, unacked index. ARGV: the message as taken, its tag,
# the unacked entry, now. 0 when the message is no longer in flight here (given back).
_RECORD = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
return 1
"""

# KEYS: the index, a stale in-flight list, its queue. ARGV[1]: the newest stale score.
# Everything in the list goes back to the end of the queue that is read next.
_GIVE_BACK = """
local score = redis.call('ZSCORE', KEYS[1], KEYS[2])
if score and tonumber(score) > tonumber(ARGV[1]) then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') do n = n + 1 end
redis.call('ZREM', KEYS[1], KEYS[2])
return n
"""


class GivenBack(Exception):
    """The message was given back to its queue while this channel could not take it."""


class _QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        handover = self.channel._handover
        if handover is None:
            return super().append(message, delivery_tag)
        self.channel._handover = None
        inflight, item = handover
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.channel.conn_or_acquire() as client:
            recorded = client.eval(_RECORD, 3, inflight, self.unacked_key,
                                   self.unacked_index_key, item, delivery_tag, entry, time())
        if not recorded:
            raise GivenBack(delivery_tag)
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start=start, num=num, interval=interval)
        if (self._vrestore_count - 1) % (interval or 1) == 0:  # when kombu scanned too
            self.channel.give_back_stale_inflight(time() - self.visibility_timeout)


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel with the atomic hand-over, and a closed connection reported
    as a connection error.

    After a broker connection error, Celery (5.7) cleans the connection up twice: its
    ``collect()`` drops the transport's client while a channel interrupted in a BRPOP read
    stays half-closed, then ``close()`` closes that channel again, which wants a new Redis
    client to restore its unacknowledged messages and fails with ``AttributeError:
    'NoneType' object has no attribute 'hostname'``. That error is not a connection error,
    so it escapes the cleanup and the worker stops ("Unrecoverable error"). Raised as a
    connection error it is ignored like the others: the worker reconnects, and the
    messages it could not restore come back with the visibility timeout.
    """

    QoS = _QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inflight_id = uuid.uuid4().hex
        self._atomic: bool | None = None  # decided at the first read (server version)
        self._sweep_next = True
        self._pending: tuple[str, str | None] | None = None
        self._handover: tuple[str, bytes] | None = None
        self._wait_queue: str | None = None  # the queue to wait on when all are empty
        self._swept_at = 0.0
        self._alive_marked: dict[str, float] = {}

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)

    # --- the atomic hand-over ---------------------------------------------------------

    @property
    def inflight_index_key(self) -> str:
        return f"{self.unacked_key}.inflight"

    def _inflight(self, source: str) -> str:
        return f"{self.unacked_key}.inflight.{self._inflight_id}|{source}"

    def _can_move(self) -> bool:
        if self._atomic is None:
            if self.global_keyprefix:
                self._atomic = False
            else:
                with self.conn_or_acquire() as client:
                    version = client.info("server").get("redis_version", "0")
                self._atomic = tuple(int(p) for p in str(version).split(".")[:2]) >= (6, 2)
                if not self._atomic:
                    log.warning("Redis %s has no LMOVE (6.2+): a worker killed while taking "
                                "a message may lose it", version)
        return self._atomic

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self._can_move():
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = monotonic()
        # A sweep marks the in-flight lists alive: due now and then, and before a wait
        # after a long pause (a restorer may have taken the mark away meanwhile).
        now = monotonic()
        marked = self._alive_marked.get(self._wait_queue or "", 0)
        if self._sweep_next or self._wait_queue not in queues or \
                now - marked > HEARTBEAT_EVERY:
            sources = [self._q_for_pri(queue, pri) for pri in self.priority_steps
                       for queue in queues]
            stale = any(now - self._alive_marked.get(s, 0) > HEARTBEAT_EVERY for s in sources)
            if stale:
                self._alive_marked.update(dict.fromkeys(sources, now))
            keys = [self.inflight_index_key]
            for source in sources:
                keys += [source, self._inflight(source)]
            self._pending = ("sweep", None)
            self._swept_at = now
            connection.send_command("EVAL", _SWEEP, len(keys), *keys,
                                    repr(time()) if stale else "")
            if self._wait_queue not in queues:
                self._wait_queue = queues[0]
            return
        wait = (timeout or self.brpop_timeout) if len(queues) == 1 else MULTI_QUEUE_WAIT
        source = self._wait_queue  # its priority-0 list: the queue's own name
        self._pending = ("wait", source)
        connection.send_command("BLMOVE", source, self._inflight(source), "RIGHT", "LEFT",
                                wait)

    def _brpop_read(self, **options: Any) -> bool:
        if self._pending is None:
            return super()._brpop_read(**options)
        kind, source = self._pending
        try:
            try:
                reply = self.client.parse_response(
                    self.client.connection, "EVAL" if kind == "sweep" else "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if kind == "sweep":
                if not reply:
                    self._sweep_next = False  # all empty: wait on one queue next
                    raise kombu_redis.Empty()
                source, item = bytes_to_str(reply[0]), reply[1]
            else:
                if reply is None:
                    self._sweep_next = True
                    self._next_wait_queue()
                    raise kombu_redis.Empty()
                # One queue: wait on it again at once (its priority lists and the alive
                # mark are swept at least every brpop_timeout); several: sweep them all.
                self._sweep_next = len(self.active_queues) > 1 or \
                    monotonic() - self._swept_at > self.brpop_timeout
                item = reply
            self._deliver_moved(source, item)
            return True
        finally:
            self._pending = None
            self._in_poll = None
            self._flush_brpop_reauth()

    def _queue_of(self, source: str) -> str:
        """The queue a list belongs to (its priority lists carry a suffix)."""
        return source.rsplit(self.sep, 1)[0] if self.sep in source else source

    def _next_wait_queue(self) -> None:
        """After a wait in vain, the next queue of the channel's (the one that gets a
        message stays: a caller calling again is served at once)."""
        queues = list(self.active_queues)
        if len(queues) > 1:
            at = queues.index(self._wait_queue) + 1 if self._wait_queue in queues else 0
            self._wait_queue = queues[at % len(queues)]

    def _deliver_moved(self, source: str, item: bytes) -> None:
        inflight = self._inflight(source)
        queue = self._queue_of(source)
        self._queue_cycle.rotate(queue)
        self._wait_queue = queue
        try:
            message = loads(bytes_to_str(item))
        except ValueError:
            log.error("dropped a message that is not JSON from %s", queue)
            with self.conn_or_acquire() as client:
                client.lrem(inflight, 1, item)
            return
        self._handover = (inflight, item)
        try:
            self.connection._deliver(message, queue)
        except GivenBack:
            log.warning("a message held while this worker was full went back to %s", queue)
        finally:
            if self._handover is not None:  # not recorded (a consumer without acks)
                self._handover = None
                with self.conn_or_acquire() as client:
                    client.lrem(inflight, 1, item)

    def give_back_stale_inflight(self, older_than: float) -> int:
        """Return what dead channels held in flight to their queues; how many messages."""
        if not self._can_move():
            return 0
        moved = 0
        index = self.inflight_index_key
        with self.conn_or_acquire() as client:
            for key in client.zrange(index, 0, older_than, byscore=True):
                key = bytes_to_str(key)
                source = key.split("|", 1)[1]
                count = client.eval(_GIVE_BACK, 3, index, key, source, older_than)
                if count and count > 0:
                    log.warning("gave %d message(s) held by a dead worker back to %s",
                                count, self._queue_of(source))
                    moved += count
        return moved

    def close(self) -> None:
        # What this channel moved but did not record goes back to its queue now, not
        # after the visibility timeout.
        if self._atomic and not self.closed:
            try:
                with self.conn_or_acquire() as client:
                    mine = client.zscan_iter(self.inflight_index_key,
                                             match=self._inflight("*"))
                    for key, _score in list(mine):
                        key = bytes_to_str(key)
                        client.eval(_GIVE_BACK, 3, self.inflight_index_key, key,
                                    key.split("|", 1)[1], "1e300")
            except Exception:  # noqa: BLE001 - a broken connection: the restorer will do it
                log.debug("in-flight lists left to the restorer", exc_info=True)
        super().close()


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``_RedisChannel``; selected for ``redis://`` brokers."""

    Channel = _RedisChannel
