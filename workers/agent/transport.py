"""The Redis transport agents and Collector workers use: kombu's, with a hand-over from the
queue to the consumer that a kill cannot interrupt (see the comment below).

Celery picks it by name (``broker_transport="workers.agent.transport:RedisTransport"``,
which ``workers.agent.client.broker_transport_for`` gives for a ``redis://`` broker).
"""

from __future__ import annotations

import logging
import uuid
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

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
