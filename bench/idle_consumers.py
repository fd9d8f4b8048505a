"""What idle agents cost Redis: ``python -m bench idle``.

It starts a redis-server (``tests.support.servers.RedisServer``, then ``CONFIG SET hz``:
``--hz 10``, Redis' default, unless told), measures ``INFO stats``
``total_commands_processed`` over ``--seconds`` with nothing connected (the baseline: what
the measuring itself and Redis cost), then starts ``--consumers`` idle consumers of
``--queues`` queues each, as node agents consume their per-node queues: the agents'
transport and its options (``workers.agent.client.make_app``, the options of
``workers.agent.base.Agent.transport_options`` for the consumer's node), and the loop of a
Celery worker (``--mode hub``: kombu's event loop with the transport registered on it, as
Celery's ``asynloop`` runs it for the agents' thread pool; ``--mode drain``:
``Connection.drain_events(timeout=1)`` back to back), with a remote-control (pidbox)
consumer beside each, as a Celery worker has (``--no-pidbox``: none). They run in
``--processes`` processes, a thread each. Once all consume, it waits ``--settle`` seconds,
measures the same counter over ``--seconds``, and prints commands/s in all and per
consumer, less the baseline, with the clients Redis saw blocked (every consumer waiting in
a ``BRPOP`` most of the time). Then it publishes one message to each consumer queue and
checks every one is received (the consumers were live), and writes the figures as JSON to
``bench/results/idle-<time>.json`` (``--json PATH``).

``--transport module:Class`` consumes through another transport class instead (to compare
with an earlier one). Target: at most 2 commands/s per idle consumer, whatever its number
of queues.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import redis

from bench.report import load, write_report

ENDPOINTS = ("hva-handle", "local-store-handle", "sta-handle", "natbox-handle",
             "backup-handle", "migration-handle", "extra-handle", "more-handle")
TARGET_PER_CONSUMER = 2.0


def node_queues(n: int, queues: int) -> tuple[str, list[str]]:
    node = f"bench.n{n:04d}"
    names = [f"{ENDPOINTS[k % len(ENDPOINTS)]}{'' if k < len(ENDPOINTS) else k}.{node}"
             for k in range(queues)]
    return node, names


def agent_transport_options(node_id: str) -> dict[str, Any]:
    """The transport options an agent of ``node_id`` consumes with."""
    from collector.config import load_settings
    from workers.agent.base import Agent

    me = SimpleNamespace(node_id=node_id, longest_job=load_settings().agent_longest_job)
    return Agent.transport_options(me)  # type: ignore[arg-type]


class IdleConsumer(threading.Thread):
    """One agent's consumer of its node's queues, in a thread of its own."""

    def __init__(self, app: Any, n: int, queues: int, mode: str, pidbox: bool,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"consumer-{n}")
        self.app, self.mode, self.pidbox, self.stop = app, mode, pidbox, stop
        self.node, self.queue_names = node_queues(n, queues)
        self.ready = threading.Event()
        self.received = 0
        self.error: BaseException | None = None

    def on_message(self, body: Any, message: Any) -> None:
        self.received += 1
        message.ack()

    def run(self) -> None:
        from kombu import Consumer, Exchange, Queue

        try:
            conn = self.app.connection_for_read(
                transport_options=agent_transport_options(self.node))
            conn.ensure_connection(max_retries=5)
            channel = conn.channel()
            queues = [Queue(q, Exchange(q), routing_key=q) for q in self.queue_names]
            consumer = Consumer(channel, queues=queues, callbacks=[self.on_message],
                                accept=["json"])
            consumer.qos(prefetch_count=2)  # the agents' threads x prefetch multiplier 1
            consumer.consume()
            if self.pidbox:
                node = self.app.control.mailbox.Node(f"{self.node}@bench", handlers={})
                node.channel = conn.channel()
                node.listen(callback=lambda body, message: None)
            if self.mode == "hub":
                self._hub(conn)
            else:
                self._drain(conn)
            conn.release()
        except BaseException as exc:  # reported by the process
            self.error = exc
            self.ready.set()

    def _hub(self, conn: Any) -> None:
        from kombu.asynchronous import Hub

        hub = Hub()
        conn.transport.register_with_event_loop(conn.connection, hub)
        loop = hub.create_loop()
        next(loop)
        self.ready.set()
        while not self.stop.is_set():
            next(loop)
        hub.close()

    def _drain(self, conn: Any) -> None:
        self.ready.set()
        while not self.stop.is_set():
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass


def run_consumers(url: str, first: int, count: int, queues: int, mode: str, pidbox: bool,
                  transport: str | None, started: Any, stop: Any, report: Any) -> None:
    """A process of ``count`` consumers (``first``...); says when all consume, runs until
    ``stop``, then reports how many messages they received."""
    from workers.agent.client import make_app

    app = make_app(url)
    if transport:
        app.conf.broker_transport = transport
    halt = threading.Event()
    consumers = [IdleConsumer(app, n, queues, mode, pidbox, halt)
                 for n in range(first, first + count)]
    for c in consumers:
        c.start()
    for c in consumers:
        c.ready.wait(60)
    errors = [repr(c.error) for c in consumers if c.error is not None]
    started.put((os.getpid(), errors))
    stop.wait()
    halt.set()
    for c in consumers:
        c.join(10)
    report.put(sum(c.received for c in consumers))


def commands_per_second(conn: redis.Redis, seconds: float) -> dict[str, float]:
    """Redis' commands/s over ``seconds``, and the blocked clients seen meanwhile."""
    blocked = []
    before = conn.info("stats")["total_commands_processed"]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(min(1.0, seconds / 10))
        blocked.append(conn.info("clients")["blocked_clients"])
    after = conn.info("stats")["total_commands_processed"]
    took = time.monotonic() - started
    # Our own INFO calls are Redis commands too: leave them out.
    own = len(blocked) + 1
    return {"commands_per_s": (after - before - own) / took, "seconds": took,
            "blocked_clients_min": min(blocked), "blocked_clients_max": max(blocked)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench idle",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--consumers", type=int, default=100)
    parser.add_argument("--queues", type=int, default=4, help="per consumer")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--hz", type=int, default=10, help="Redis' hz (its default: 10)")
    parser.add_argument("--mode", choices=("hub", "drain"), default="hub")
    parser.add_argument("--no-pidbox", dest="pidbox", action="store_false")
    parser.add_argument("--transport", default=None,
                        help="module:Class instead of the agents' (a comparison)")
    parser.add_argument("--json", default=None, help="where to write the figures")
    args = parser.parse_args(argv)

    from tests.support.servers import RedisServer
    from workers.agent.client import broker_transport_for

    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_at_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"}}
    with RedisServer() as server:
        url = f"{server.url}/0"
        conn = redis.Redis.from_url(url)
        conn.config_set("hz", args.hz)
        report["redis"] = {"version": conn.info("server")["redis_version"],
                           "hz": int(conn.config_get("hz")["hz"])}
        report["transport"] = args.transport or broker_transport_for(url) or "kombu's"
        print(f"idle consumers bench {report['started']}  redis {report['redis']['version']} "
              f"hz {report['redis']['hz']}  transport {report['transport']}  load {load()}")
        baseline = commands_per_second(conn, args.seconds)
        print(f"baseline, nothing connected: {baseline['commands_per_s']:.1f} commands/s")

        ctx = multiprocessing.get_context("spawn")
        started, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        per = [args.consumers // args.processes + (p < args.consumers % args.processes)
               for p in range(args.processes)]
        firsts = [sum(per[:p]) for p in range(args.processes)]
        processes = [ctx.Process(target=run_consumers, args=(
            url, firsts[p], per[p], args.queues, args.mode, args.pidbox, args.transport,
            started, stop, results), daemon=True) for p in range(args.processes) if per[p]]
        t0 = time.monotonic()
        for p in processes:
            p.start()
        try:
            errors = []
            for _ in processes:
                errors += started.get(timeout=120)[1]
            if errors:
                raise SystemExit(f"consumers failed to start: {errors[:3]}")
            print(f"{args.consumers} consumers of {args.queues} queues each "
                  f"({args.mode} loop, pidbox {'on' if args.pidbox else 'off'}) in "
                  f"{len(processes)} processes started in {time.monotonic() - t0:.1f} s; "
                  f"settling {args.settle:g} s")
            time.sleep(args.settle)
            idle = commands_per_second(conn, args.seconds)
            extra = idle["commands_per_s"] - baseline["commands_per_s"]
            per_consumer = extra / args.consumers
            print(f"idle: {idle['commands_per_s']:.1f} commands/s in all, "
                  f"{extra:.1f} above the baseline = {per_consumer:.2f} per consumer "
                  f"(target <= {TARGET_PER_CONSUMER:g}: "
                  f"{'met' if per_consumer <= TARGET_PER_CONSUMER else 'MISSED'}); "
                  f"blocked clients {idle['blocked_clients_min']}.."
                  f"{idle['blocked_clients_max']}")
            stats = conn.info("commandstats")
            top = sorted(((k.removeprefix("cmdstat_"), v["calls"]) for k, v in stats.items()),
                         key=lambda kv: -kv[1])[:8]
            print("commands since start (top 8): " + ", ".join(f"{k} {v}" for k, v in top))
            sent = _publish_one_each(url, args)
        finally:
            stop.set()
        received = sum(results.get(timeout=30) for _ in processes)
        for p in processes:
            p.join(15)
        print(f"liveness: {received} of {sent} messages published after the measure "
              f"received")
        report["results"] = {
            "baseline": baseline, "idle": idle, "commands_per_s_above_baseline": extra,
            "per_consumer": per_consumer, "target_per_consumer": TARGET_PER_CONSUMER,
            "target_met": per_consumer <= TARGET_PER_CONSUMER,
            "commandstats_top": dict(top), "published": sent, "received": received}
    write_report(report, args.json, "idle-")
    if received != sent:
        raise SystemExit("some consumers did not receive their message")


def _publish_one_each(url: str, args: argparse.Namespace) -> int:
    """One message on every consumer queue; how many were published."""
    from kombu import Exchange, Producer, Queue

    from workers.agent.client import make_app

    app = make_app(url)
    sent = 0
    with app.connection_for_write() as conn:
        producer = Producer(conn.channel())
        for n in range(args.consumers):
            for q in node_queues(n, args.queues)[1]:
                producer.publish({"n": n}, exchange=Exchange(q), routing_key=q,
                                 declare=[Queue(q, Exchange(q), routing_key=q)],
                                 serializer="json")
                sent += 1
    deadline = time.monotonic() + 15
    check = redis.Redis.from_url(url)
    while time.monotonic() < deadline and any(
            check.llen(q) for n in range(args.consumers) for q in node_queues(n, args.queues)[1]):
        time.sleep(0.2)
    time.sleep(1)
    return sent


if __name__ == "__main__":
    main()
