"""An agent's consumer notices a broker that went away, and reconnects.

kombu's Redis consumer learns of a dead connection from the sockets it polls. An agent's
only polled socket is its ``BRPOP``; while that one is paused (its jobs fill its prefetch)
or being re-established during a Sentinel failover, nothing tells the consumer the master
is gone, and it can wait for ever. A Collector worker also polls its remote-control
channel, whose error restarts the consumer; an agent has none (its broker user reaches no
``*.celery.pidbox`` channel: docs/reference.md, "Node identity").

``BrokerWatch`` is a consumer step that, every COLLECTOR_AGENT_BROKER_CHECK seconds (5),
looks whether the consumer's own connection (the BRPOP one) was closed, by kombu or by the
server, and PINGs the broker on a pooled connection. A connection error raised in the event
loop's timer is one the worker propagates: the consumer restarts, lets go of what it had
prefetched (an ack that failed no longer holds its slot), and reconnects, through the
sentinels after a failover.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery, bootsteps
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_INTERVAL = 5.0


class BrokerWatch(bootsteps.StartStopStep):
    """PING the broker from the consumer's event loop; a failure restarts the consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    interval = DEFAULT_INTERVAL  # seconds between PINGs (``watch_broker`` sets it)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry: Any = None

    def start(self, parent: Any) -> None:
        self.timer_entry = parent.timer.call_repeatedly(self.interval, self.ping, (parent,))

    def ping(self, parent: Any) -> None:
        channel = parent.connection.default_channel
        if closed(getattr(getattr(channel, "client", None), "connection", None)):
            raise RedisConnectionError("the consumer's broker connection was closed")
        # A pooled connection of the channel, never the one its BRPOP waits on.
        with channel.conn_or_acquire() as client:
            client.ping()

    def stop(self, parent: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop


def closed(connection: Any) -> bool:
    """Whether the consumer's own connection (the BRPOP one) is gone: dropped by kombu, or
    closed by the server (its socket reads the end of the stream). Looked at without
    reading or sending anything."""
    sock = getattr(connection, "_sock", None)
    if sock is None:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, ValueError):  # nothing to read yet; a TLS socket: not known
        return False
    except OSError:
        return True


def watch_broker(app: Celery, interval: float) -> None:
    """Add ``BrokerWatch`` to ``app``'s workers, pinging every ``interval`` seconds."""
    app.steps["consumer"].add(type("BrokerWatch", (BrokerWatch,), {"interval": interval}))
