"""kombu's own Redis transports (plain, TLS, Sentinel), with one fix, a closed connection is
reported as the connection error it is, and one saving, a channel's redis-py client is
built once per connection pool instead of once per command.

The hand-over from a queue to a consumer is kombu's (``BRPOP``, then the unacknowledged
hash). A consumer killed between the two loses that message in Redis; the Collector does
not count on Redis for it: a job is delivered when its agent takes it through the ledger
(``jobqueue-proxy.running``), and one not taken in time is published again under its id
(``collector.services.jobs.redelivery``); events are re-sent until each handler has a
receipt. See docs/reference.md, "The transport".

The kombu internals touched, and tested (tests/integration/delivery/test_broker_restart.py,
test_sentinel_and_tls.py): ``Channel._connparams`` and ``Channel._create_client`` (overridden, then called), and
``kombu.transport.TRANSPORT_ALIASES`` (the schemes ``redis``, ``rediss`` and ``sentinel``
mapped to the classes here). The aliases matter: when kombu moves to a failover alternate
it picks the transport again from that URL's scheme, so a class named only in Celery's
``broker_transport`` would be replaced by kombu's at the first reconnection.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class _ClosedConnectionIsConnectionError:
    """After a broker connection error, Celery (5.7) cleans the connection up twice: its
    ``collect()`` drops the transport's client while a channel interrupted in a BRPOP read
    stays half-closed, then ``close()`` closes that channel again, which wants a new Redis
    client to restore its unacknowledged messages and fails with ``AttributeError:
    'NoneType' object has no attribute 'hostname'``. That error is not a connection error,
    so it escapes the cleanup and the worker stops ("Unrecoverable error"). Raised as a
    connection error it is ignored like the others: the worker reconnects, and the
    messages it could not restore come back with the visibility timeout."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class _OneClientPerPool:
    """kombu builds a new redis-py client for every command a channel sends outside its
    consumer's poll (each publish, each binding lookup, each acknowledgement), and a client
    costs about 0.2 ms of CPU to build (it copies its table of reply parsers): more than
    the command. A redis-py client is safe to share between threads (each command borrows
    a connection from the pool), so the channel keeps one per pool and builds a new one
    only when its pool is replaced (a reconnection)."""

    _client_of_pool: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        client = self._client_of_pool
        if client is None or client.connection_pool is not pool:
            client = self._client_of_pool = super()._create_client()  # type: ignore[misc]
        return client


class _RedisChannel(_ClosedConnectionIsConnectionError, _OneClientPerPool, kombu_redis.Channel):
    pass


class _SentinelChannel(_ClosedConnectionIsConnectionError, _OneClientPerPool,
                       kombu_redis.SentinelChannel):
    pass


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport (``redis://``, ``rediss://``) with ``_RedisChannel``."""

    Channel = _RedisChannel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport (``sentinel://``) with ``_SentinelChannel``."""

    Channel = _SentinelChannel


REDIS_TRANSPORT = f"{__name__}:RedisTransport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"
TRANSPORTS = {"redis": REDIS_TRANSPORT, "rediss": REDIS_TRANSPORT,
              "sentinel": SENTINEL_TRANSPORT}

TRANSPORT_ALIASES.update(TRANSPORTS)  # the failover alternates of a URL list too
