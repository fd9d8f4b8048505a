"""The hot RPCs against bare Celery, on SQLite and PostgreSQL, in one run.

``python -m bench`` (this module) starts a Redis server (and a PostgreSQL cluster), seeds
each database, starts the workers of the roles it calls, one per role as deployed
(``bench.worker``: ``collector worker`` plus two baseline tasks on ``hva-collector``) and
measures, for each backend and worker pool:

- latency: each hot RPC's p50 / p99, and its ratio to the bare no-op (``ping``) and to a
  bare primary-key read, both served by the same worker; "same answer, no SQL" shows what
  get_instance's answer costs by its size alone. Calls run in interleaved blocks (in each
  block, rounds of every call once in shuffled order); a ratio is the median over the
  blocks of the block's median latency over the baseline's, so load from elsewhere on the
  machine weighs on both sides alike;
- throughput: calls per second with 8 callers (processes), per call, as a ratio to the
  no-op's in the same blocks, their p50 / p99, and the worker's CPU time per call; and
  get_instance's while one more caller keeps asking for the 5,000-vnic netfilter document;
- get_netfilter_data / get_dhcp_conf at 1,000 and 5,000 vnics: latency, cost per vnic
  through the worker ((p50 - no-op p50) / vnics) and in-process (best of 5), and the SQL
  statements of one call;
- the worker's resident memory (main process and pool children);
- signing: get_instance signed by the node that hosts the instance (credentials issued to
  it, ``collector credentials issue``) to the worker, which checks the signature and that
  the node owns the instance, as deployed; and unsigned, to a second worker of the role
  started with COLLECTOR_REQUIRE_SIGNATURES=0 on a Redis database of its own: p50 / p99 of
  each, the calls interleaved as above, and signed over unsigned (the median of the
  blocks' ratios); beside them, signed by the operator (the signature checked, no right to
  check), to tell the two costs apart. The other calls are signed as the operator, with a
  signing secret made for the run (COLLECTOR_SIGNING_SECRET).

It prints the figures, checks the targets, prints an in-process profile of every call that
misses one (where its time goes), and writes everything as JSON to
``bench/results/<time>.json`` for comparison between commits. The load average is
recorded with the figures: run it on a quiet machine.

Options: ``--backends sqlite,postgresql``, ``--pools prefork:2`` (pool:concurrency, several
to compare; default: the hva-collector role's), ``--blocks``, ``--calls``, ``--seconds``
(per throughput block), ``--vnics 1000,5000``, ``--quick``, ``--json PATH``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import secrets
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.report import load, write_report
from collector.db import dispose_engines, get_engine, unit_of_work
from collector.db.migrate import upgrade
from tests.support.servers import PostgresServer, RedisServer, WorkerProcess
from workers.demo.world.hot import HotWorld, seed_hot, seed_node
from workers.roles import pool_for

NOOP, PK_READ, ANSWER = "bare no-op", "bare primary-key read", "same answer, no SQL"
# (table name, endpoint, method, arguments from the world)
HOT_CALLS = [
    (NOOP, "hva-collector", "ping", lambda w, n: []),
    (PK_READ, "hva-collector", "get_bench_state", lambda w, n: [w.instance_pk]),
    (ANSWER, "hva-collector", "get_bench_answer", lambda w, n: [w.instance]),
    ("get_instance", "hva-collector", "get_instance", lambda w, n: [w.instance]),
    ("update_instance", "hva-collector", "update_instance",
     lambda w, n: [w.update_targets[0], {"status": ("online", "offline")[n % 2]}]),
    ("get_volume", "sta-collector", "get_volume", lambda w, n: [w.volume]),
    ("get_nic", "hva-collector", "get_nic", lambda w, n: [w.vif]),
    ("get_network", "hva-collector", "get_network", lambda w, n: [w.network]),
    ("get_instance_monitor_data", "hva-collector", "get_instance_monitor_data",
     lambda w, n: [w.node_id]),
    ("get_resource_monitor_data", "hva-collector", "get_resource_monitor_data",
     lambda w, n: [w.node_id]),
    ("get_resource_alarms", "alarm-collector", "get_resource_alarms",
     lambda w, n: [[w.instance]]),
]
THROUGHPUT_CALLS = [NOOP, PK_READ, "get_instance", "update_instance"]
BESIDE_HEAVY = "get_instance beside a slow call"
TARGETS = {  # (call, measure) -> {backend: limit}; "min" targets are lower bounds
    ("get_instance", "x no-op"): {"sqlite": 1.5, "postgresql": 2.0},
    ("update_instance", "x no-op"): {"sqlite": 1.4},
}
THROUGHPUT_TARGET = ("get_instance", 0.6)
SIGNED, UNSIGNED = "signing on", "signing off"
BY_OPERATOR = "signing on, by the operator"
SIGNING_TARGET = 1.20  # get_instance signed, at most this times its unsigned latency
PER_VNIC_SPREAD = 0.20


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pools", default=None,
                        help="pool:concurrency[,...] (default: the hva-collector role's)")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--calls", type=int, default=20, help="calls per RPC per block")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput block")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--vnics", default="1000,5000")
    parser.add_argument("--quick", action="store_true", help="fewer blocks and calls")
    parser.add_argument("--json", default=None, help="where to write the figures")
    args = parser.parse_args()
    if args.quick:
        args.blocks, args.calls, args.seconds = 3, 8, 1.0
    pools = [_pool(p) for p in args.pools.split(",")] if args.pools else \
        [pool_for("hva-collector")]
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_at_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": []}
    from collector.config import load_settings

    report["settings"]["sqlite_synchronous"] = load_settings().sqlite_synchronous
    print(f"collector bench {report['started']}  {os.cpu_count()} cpus  python "
          f"{platform.python_version()}  load {load()}  SQLite synchronous="
          f"{report['settings']['sqlite_synchronous']} (COLLECTOR_SQLITE_SYNCHRONOUS)")
    # The bench's own installation: the workers check every message against this secret,
    # and the clients sign as the operator with it (the nodes with keys issued from it).
    os.environ["COLLECTOR_SIGNING_SECRET"] = secrets.token_hex(32)
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        postgres = None
        for n, backend in enumerate(args.backends.split(",")):
            if backend == "postgresql" and postgres is None:
                postgres = stack.enter_context(PostgresServer())
            # Databases 1.. for the brokers, 9.. for the unsigned worker's (signing off).
            run = Run(backend, args, redis.url + f"/{n + 1}", postgres, stack,
                      unsigned_broker=redis.url + f"/{n + 9}")
            report["runs"] += run.all(pools)
    write_report(report, args.json, "")


def _pool(text: str) -> tuple[str, int]:
    name, _, concurrency = text.partition(":")
    return name, int(concurrency or 1)



class Run:
    """One backend: its database, seeded once, measured with each pool."""

    def __init__(self, backend: str, args: argparse.Namespace, broker: str,
                 postgres: PostgresServer | None, stack: ExitStack,
                 unsigned_broker: str) -> None:
        self.backend, self.args, self.broker = backend, args, broker
        self.unsigned_broker = unsigned_broker
        if backend == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            self.url = f"sqlite:///{tmp}/bench.sqlite3"
        else:
            self.url = postgres.create_database("bench")
        upgrade(self.url)
        started = time.perf_counter()
        self.world = seed_hot(self.url, args.callers)
        self.vnics = [int(v) for v in args.vnics.split(",") if v]
        for n, vnics in enumerate(self.vnics):
            self.world.nodes[vnics] = seed_node(self.url, vnics, 100 + n)
        if backend == "postgresql":  # statistics, as autovacuum would soon gather them
            import psycopg

            with psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("ANALYZE")
        print(f"\n{backend}: seeded in {time.perf_counter() - started:.1f} s")

    def all(self, pools: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [self.one(pool, concurrency) for pool, concurrency in pools]

    def one(self, pool: str, concurrency: int) -> dict[str, Any]:
        print(f"\n== {self.backend}, pool {pool} x{concurrency} ==   load {load()}")
        # As deployed: a worker per role, each consuming its own queue (a worker of several
        # queues pays a wait on each switch between them: see docs/reference.md).
        def start(role: str, broker: str | None = None,
                  env: dict[str, str] | None = None) -> WorkerProcess:
            return WorkerProcess(self.url, broker or self.broker, role, env={
                "COLLECTOR_REQUIRE_SIGNATURES": "1", **(env or {})}, argv=[
                "-m", "bench.worker", "--role", role, "--pool", pool,
                "--concurrency", str(concurrency), "--loglevel", "INFO"]).wait_ready()

        others = [start(role) for role in sorted({endpoint for _, endpoint, _, _ in HOT_CALLS}
                                                 - {"hva-collector"})]
        worker = start("hva-collector")
        result: dict[str, Any] = {"backend": self.backend, "pool": pool,
                                  "concurrency": concurrency, "load_at_start": os.getloadavg()}
        try:
            from workers.agent.client import Collector

            with Collector(self.broker, timeout=120) as client:
                result["memory_after_start_mb"] = _rss_mb(worker.pid)
                result["latency"] = self.latency(client)
                result["signing"] = self.signing(client, start)
                result["netfilter"] = self.netfilter(client)
                result["throughput"] = self.throughput(worker)
                result["memory_at_end_mb"] = _rss_mb(worker.pid)
        finally:
            for process in (worker, *others):
                process.stop()
        print(f"worker resident memory (main + pool): {result['memory_after_start_mb']:.0f} MB"
              f" after start, {result['memory_at_end_mb']:.0f} MB at the end")
        result["targets"] = self.check(result)
        result["load_at_end"] = os.getloadavg()
        return result

    # -- latency ------------------------------------------------------------------------

    def latency(self, client: Any) -> dict[str, Any]:
        calls = {name: (endpoint, method, arguments)
                 for name, endpoint, method, arguments in HOT_CALLS}
        counter = defaultdict(int)

        def call(name: str) -> float:
            endpoint, method, arguments = calls[name]
            counter[name] += 1
            values = arguments(self.world, counter[name])
            began = time.perf_counter()
            client.call(endpoint, method, *values)
            return time.perf_counter() - began

        for name in calls:  # warm every pool thread / child: connections, compiled SQL
            for _ in range(30):
                call(name)
        sizes = {name: len(json.dumps(client.call(endpoint, method,
                                                  *arguments(self.world, 0))))
                 for name, (endpoint, method, arguments) in calls.items()}
        samples, ratios = _blocks(list(calls), self.args.blocks, self.args.calls, call)
        out = {}
        print(f"{'call':28} {'answer B':>9} {'p50 ms':>8} {'p99 ms':>8} {'x no-op':>8} "
              f"{'x pk-read':>9}")
        for name in calls:
            row = {"answer_bytes": sizes[name], "p50_ms": _pct(samples[name], 0.5) * 1e3,
                   "p99_ms": _pct(samples[name], 0.99) * 1e3,
                   "x no-op": statistics.median(ratios[name][NOOP]),
                   "x pk-read": statistics.median(ratios[name][PK_READ])}
            out[name] = row
            print(f"{name:28} {row['answer_bytes']:9d} {row['p50_ms']:8.2f} "
                  f"{row['p99_ms']:8.2f} {row['x no-op']:8.2f} {row['x pk-read']:9.2f}")
        return out

    # -- signing --------------------------------------------------------------------------

    def signing(self, operator: Any, start: Callable[..., WorkerProcess]) -> dict[str, Any]:
        """get_instance signed by the instance's host node (its own credentials and broker
        user) to the hva-collector worker, which checks the signature and the node's right
        to the instance; against unsigned calls to a second hva-collector worker started
        with COLLECTOR_REQUIRE_SIGNATURES=0, on a Redis database of its own (nothing
        checked); and signed by the ``operator`` (no right to check) to the first worker.
        Interleaved blocks, each of 4 x ``calls`` rounds."""
        from collector.signing import Credential
        from workers.agent.client import Collector, RpcError
        from workers.agent.signing import signed_by
        from workers.node_credentials import issue_node

        with _environ(COLLECTOR_DATABASE_URL=self.url, COLLECTOR_BROKER_URL=self.broker,
                      COLLECTOR_RESULT_BACKEND=self.broker):
            node = issue_node(self.world.node_id)
        dispose_engines()
        unchecked = start("hva-collector", self.unsigned_broker,
                          {"COLLECTOR_REQUIRE_SIGNATURES": "0"})
        try:
            with ExitStack() as stack:
                clients = {SIGNED: stack.enter_context(Collector(
                    node.broker_url, node.result_backend, timeout=120,
                    credential=Credential.from_node_key(node.node_id, node.node_key)))}
                clients[BY_OPERATOR] = operator
                # No credential at all (not even a secret kept in a data directory): unsigned.
                with _environ(COLLECTOR_SIGNING_SECRET=None, COLLECTOR_NODE_ID=None,
                              COLLECTOR_NODE_KEY=None, COLLECTOR_DATA_DIR=tempfile.mkdtemp()):
                    clients[UNSIGNED] = stack.enter_context(Collector(
                        self.unsigned_broker, self.unsigned_broker, timeout=120))
                    stray = stack.enter_context(Collector(self.broker, self.broker,
                                                          timeout=30))
                if signed_by(clients[UNSIGNED].app) is not None:
                    raise RuntimeError("the unsigned client signs its messages")
                try:  # the first worker checks: an unsigned call is refused
                    stray.call("hva-collector", "get_instance", self.world.instance)
                    raise RuntimeError("the checking worker ran an unsigned call")
                except RpcError as exc:
                    if exc.error_type != "Unauthorized":
                        raise

                def call(name: str) -> float:
                    began = time.perf_counter()
                    clients[name].call("hva-collector", "get_instance", self.world.instance)
                    return time.perf_counter() - began

                for name in clients:  # warm each worker's pool children
                    for _ in range(30):
                        call(name)
                samples, ratios = _blocks(list(clients), self.args.blocks,
                                          self.args.calls * 4, call, baselines=(UNSIGNED,))
        finally:
            unchecked.stop()
        out: dict[str, Any] = {"signer": node.node_id, "instance": self.world.instance}
        print(f"{'get_instance, ' + self.world.node_id:28} {'p50 ms':>9} {'p99 ms':>8}")
        for name in (SIGNED, BY_OPERATOR, UNSIGNED):
            out[name] = {"p50_ms": _pct(samples[name], 0.5) * 1e3,
                         "p99_ms": _pct(samples[name], 0.99) * 1e3, "calls": len(samples[name])}
            if name != UNSIGNED:
                out[name]["x off"] = statistics.median(ratios[name][UNSIGNED])
            print(f"{name:28} {out[name]['p50_ms']:9.2f} {out[name]['p99_ms']:8.2f}"
                  + (f"   x off {out[name]['x off']:.2f}" if name != UNSIGNED else ""))
        out["on x off"] = out[SIGNED]["x off"]
        out["target"] = SIGNING_TARGET
        out["met"] = out["on x off"] <= SIGNING_TARGET
        print(f"{'signing on x off':28} {out['on x off']:9.2f}   (target <= {SIGNING_TARGET}: "
              f"{'met' if out['met'] else 'MISSED'})")
        return out

    # -- per-node documents ---------------------------------------------------------------

    def netfilter(self, client: Any) -> dict[str, Any]:
        hva = client.rpc("hva-collector")
        calls: dict[str, Any] = {NOOP: hva.ping}
        for vnics, (node_id, network) in self.world.nodes.items():
            calls[f"get_netfilter_data {vnics}"] = lambda n=node_id: hva.get_netfilter_data(n)
            calls[f"get_dhcp_conf {vnics}"] = lambda n=network: hva.get_dhcp_conf(n)
        for fn in calls.values():
            fn()

        def call(name: str) -> float:
            began = time.perf_counter()
            calls[name]()
            return time.perf_counter() - began

        samples, _ = _blocks(list(calls), max(3, self.args.blocks // 2),
                             max(3, self.args.calls // 4), call)
        noop = _pct(samples[NOOP], 0.5)
        measured = self.in_process([name for name in calls if name != NOOP])
        out = {}
        print(f"{'per-node document':28} {'vnics':>9} {'p50 ms':>8} {'per vnic us':>12} "
              f"{'in-process us':>14} {'statements':>10}")
        for name in calls:
            if name == NOOP:
                continue
            method, vnics = name.rsplit(" ", 1)
            p50 = _pct(samples[name], 0.5)
            statements, seconds = measured[name]
            row = {"vnics": int(vnics), "p50_ms": p50 * 1e3,
                   "per_vnic_us": (p50 - noop) / int(vnics) * 1e6,
                   "in_process_per_vnic_us": seconds / int(vnics) * 1e6,
                   "statements": statements}
            out[name] = row
            print(f"{method:28} {row['vnics']:9d} {row['p50_ms']:8.2f} "
                  f"{row['per_vnic_us']:12.2f} {row['in_process_per_vnic_us']:14.2f} "
                  f"{row['statements']:10d}")
        return out

    def in_process(self, names: list[str], runs: int = 9) -> dict[str, tuple[int, float]]:
        """Each call's body run in this process on the same database (unit of work,
        document, JSON; no Celery): its SQL statements, and its best time of ``runs``, the
        calls taking turns so that a busy moment weighs on all of them."""
        from collector.services import hva_netfilter, hva_network
        from tasks.app import settle_heap

        methods = {"get_netfilter_data": hva_netfilter.get_netfilter_data,
                   "get_dhcp_conf": hva_network.get_dhcp_conf}

        def run(name: str) -> None:
            method, vnics = name.rsplit(" ", 1)
            node_id, network = self.world.nodes[int(vnics)]
            with unit_of_work(self.url, readonly=True) as session:
                json.dumps(methods[method](
                    session, node_id if method == "get_netfilter_data" else network))

        settle_heap()  # as a worker does
        count = [0]

        def counted(*_args: object) -> None:
            count[0] += 1

        statements = {}
        engine = get_engine(self.url, readonly=True)
        for name in names:
            run(name)
            count[0] = 0
            event.listen(engine, "before_cursor_execute", counted)
            try:
                run(name)
            finally:
                event.remove(engine, "before_cursor_execute", counted)
            statements[name] = count[0]
        best = dict.fromkeys(names, float("inf"))
        for _ in range(runs):
            for name in names:
                began = time.perf_counter()
                run(name)
                best[name] = min(best[name], time.perf_counter() - began)
        return {name: (statements[name], best[name]) for name in names}

    # -- throughput -------------------------------------------------------------------------

    def throughput(self, worker: WorkerProcess) -> dict[str, Any]:
        """Calls per second with ``callers`` callers, per call, in interleaved blocks; and
        get_instance's while one more caller keeps asking for the biggest node's netfilter
        document (how a pool copes with a slow call beside the fast ones)."""
        context = multiprocessing.get_context("spawn")
        commands, answers = context.Queue(), context.Queue()
        heavy_commands = context.Queue()
        biggest = self.world.nodes[max(self.world.nodes)][0] if self.world.nodes else None
        callers = [context.Process(target=_caller, args=(self.broker, n, asdict(self.world),
                                                          commands, answers))
                   for n in range(self.args.callers)]
        if biggest:
            callers.append(context.Process(target=_caller, args=(
                self.broker, -1, asdict(self.world), heavy_commands, answers)))
        for process in callers:
            process.start()
        for _ in callers:
            answers.get(timeout=120)  # ready
        names = list(THROUGHPUT_CALLS) + ([BESIDE_HEAVY] if biggest else [])
        rows: dict[str, list[dict[str, float]]] = defaultdict(list)
        ratios: dict[str, list[float]] = defaultdict(list)
        try:
            for _ in range(2):  # warm
                self._burst(commands, answers, heavy_commands, "get_instance", 0.5, worker)
            for block in range(max(2, self.args.blocks // 2)):
                order = list(names)
                random.Random(block).shuffle(order)
                this = {}
                for name in order:
                    this[name] = self._burst(commands, answers, heavy_commands, name,
                                             self.args.seconds, worker, biggest)
                    rows[name].append(this[name])
                for name in order:
                    ratios[name].append(this[name]["calls_per_s"] / this[NOOP]["calls_per_s"])
        finally:
            for _ in range(self.args.callers):
                commands.put(None)
            heavy_commands.put(None)
            for process in callers:
                process.join(30)
        out = {}
        print(f"{'throughput, ' + str(self.args.callers) + ' callers':28} {'calls/s':>9} "
              f"{'x no-op':>8} {'p50 ms':>8} {'p99 ms':>8} {'worker CPU ms/call':>19}")
        for name in names:
            row = {key: statistics.median(r[key] for r in rows[name]) for key in rows[name][0]}
            row["x no-op"] = statistics.median(ratios[name])
            out[name] = row
            print(f"{name:28} {row['calls_per_s']:9.0f} {row['x no-op']:8.2f} "
                  f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
                  f"{row['worker_cpu_ms_per_call']:19.2f}")
        return out

    def _burst(self, commands: Any, answers: Any, heavy_commands: Any, name: str,
               seconds: float, worker: WorkerProcess,
               heavy_node: str | None = None) -> dict[str, float]:
        """Every caller calls ``name`` for ``seconds``: calls per second, their latency,
        and the worker's CPU milliseconds per call."""
        call = "get_instance" if name == BESIDE_HEAVY else name
        cpu_before = _cpu_seconds(worker.pid)
        if name == BESIDE_HEAVY:
            heavy_commands.put(("get_netfilter_data", seconds, heavy_node))
        for _ in range(self.args.callers):
            commands.put((call, seconds, None))
        done = [answers.get(timeout=seconds + 300)
                for _ in range(self.args.callers + (name == BESIDE_HEAVY))]
        cpu = _cpu_seconds(worker.pid) - cpu_before
        ours = [d for d in done if d["name"] == call]
        calls = sum(d["done"] for d in ours)
        latencies = [t for d in ours for t in d["latencies"]]
        return {"calls_per_s": calls / max(d["elapsed"] for d in ours),
                "p50_ms": _pct(latencies, 0.5) * 1e3, "p99_ms": _pct(latencies, 0.99) * 1e3,
                "worker_cpu_ms_per_call": cpu / max(1, calls) * 1e3}

    # -- targets and profiles ----------------------------------------------------------------

    def check(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        checks = []
        for (name, measure), limits in TARGETS.items():
            if self.backend in limits:
                value = result["latency"][name][measure]
                checks.append({"what": f"{name} {measure}", "value": value,
                               "limit": limits[self.backend], "met": value <= limits[self.backend],
                               "call": name})
        if "signing" in result:
            value = result["signing"]["on x off"]
            checks.append({"what": "get_instance signing on x off", "value": value,
                           "limit": SIGNING_TARGET, "met": value <= SIGNING_TARGET,
                           "call": "get_instance signed"})
        name, least = THROUGHPUT_TARGET
        value = result["throughput"][name]["x no-op"]
        checks.append({"what": f"{name} throughput x no-op", "value": value, "limit": least,
                       "met": value >= least, "call": name, "minimum": True})
        for method in ("get_netfilter_data",):
            rows = [r for n, r in result["netfilter"].items() if n.startswith(method)]
            if len(rows) >= 2:
                # How the work grows is judged in-process (best of several runs): a call of
                # a few hundred milliseconds through a shared machine's worker carries
                # more noise than the 20 % asked; the worker's figure is printed beside.
                low, high = rows[0], rows[-1]
                spread = high["in_process_per_vnic_us"] / low["in_process_per_vnic_us"] - 1
                through = high["per_vnic_us"] / low["per_vnic_us"] - 1
                checks.append({"what": f"{method} per-vnic cost at {high['vnics']} vs "
                                       f"{low['vnics']}", "value": spread,
                               "limit": PER_VNIC_SPREAD, "met": abs(spread) <= PER_VNIC_SPREAD
                               and high["statements"] == low["statements"], "call": method,
                               "statements": [low["statements"], high["statements"]],
                               "through_the_worker": through})
        print("targets:")
        for check in checks:
            sign = ">=" if check.get("minimum") else "<="
            extra = (f"  statements {check['statements']}, through the worker "
                     f"{check['through_the_worker']:+.2f}") if "statements" in check else ""
            print(f"  {'met   ' if check['met'] else 'MISSED'} {check['what']}: "
                  f"{check['value']:.2f} ({sign} {check['limit']}){extra}")
        for check in checks:
            if not check["met"] and check["call"] in ("get_instance", "update_instance"):
                check["profile"] = self.profile(check["call"])
                print(f"\nwhere {check['call']}'s time goes (in-process, the task's body and "
                      f"its JSON, no Celery):\n{check['profile']}")
                if check["call"] == "update_instance" and self.backend == "sqlite":
                    check["fsync_ms"] = self.fsync_ms()
                    print(f"a SQLite commit waits for an fsync of the WAL (the commit line "
                          f"above) under COLLECTOR_SQLITE_SYNCHRONOUS=full: "
                          f"{check['fsync_ms']:.2f} ms per fsync on this disk now, against "
                          f"a bare round trip of {result['latency'][NOOP]['p50_ms']:.2f} ms")
        return checks

    def fsync_ms(self, times: int = 20) -> float:
        """The median time of writing a page and an fsync, beside the database's file."""
        folder = Path(self.url.removeprefix("sqlite:///")).parent
        samples = []
        with tempfile.NamedTemporaryFile(dir=folder) as probe:
            for _ in range(times):
                began = time.perf_counter()
                probe.write(b"x" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
                samples.append(time.perf_counter() - began)
        return statistics.median(samples) * 1e3

    def profile(self, name: str, calls: int = 300) -> str:
        """cProfile of the task's body (argument check, unit of work, document, JSON)."""
        import tasks.endpoints.hva_collector  # noqa: F401 - registers the endpoint's tasks
        from tasks.app import app
        from tasks.execution import forget_settings

        os.environ["COLLECTOR_DATABASE_URL"] = self.url
        forget_settings()
        task = app.tasks[f"hva-collector.{name}"]
        _, _, _, arguments = next(c for c in HOT_CALLS if c[0] == name)
        for n in range(50):
            json.dumps(task.run(*arguments(self.world, n)))
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        for n in range(calls):
            json.dumps(task.run(*arguments(self.world, n)))
        profiler.disable()
        per_call = (time.perf_counter() - began) / calls * 1e6
        text = io.StringIO()
        text.write(f"{per_call:.0f} us per call under the profiler; top by own time:\n")
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
        dispose_engines()
        return "\n".join(line for line in text.getvalue().splitlines()
                         if line.strip() and not line.startswith(("   Ordered", "   List")))


def _blocks(names: list[str], blocks: int, calls: int, call: Any,
            baselines: tuple[str, ...] = (NOOP, PK_READ),
            ) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """Interleaved blocks: in each block every name is called once per round (in a shuffled
    order), ``calls`` rounds. Returns every sample, and per name the per-block ratios of its
    median to each baseline's (those of ``baselines`` among ``names``)."""
    samples: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    shuffle = random.Random(0).shuffle
    for _ in range(blocks):
        these: dict[str, list[float]] = defaultdict(list)
        for _ in range(calls):
            order = list(names)
            shuffle(order)
            for name in order:
                these[name].append(call(name))
        medians = {name: statistics.median(values) for name, values in these.items()}
        for name in names:
            samples[name] += these[name]
            for baseline in baselines:
                if baseline in medians:
                    ratios[name][baseline].append(medians[name] / medians[baseline])
    return samples, ratios


@contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """This process's environment with ``values`` set (None: unset), then as it was."""
    before = {name: os.environ.get(name) for name in values}

    def apply(these: dict[str, str | None]) -> None:
        for name, value in these.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(values)
    try:
        yield
    finally:
        apply(before)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _caller(broker: str, index: int, world: dict[str, Any], commands: Any,
            answers: Any) -> None:
    """One of the throughput callers: runs the call it is told for the time it is told."""
    from workers.agent.client import Collector

    hot = HotWorld(**world)
    table = {name: (endpoint, method, arguments)
             for name, endpoint, method, arguments in HOT_CALLS}
    table["get_netfilter_data"] = ("hva-collector", "get_netfilter_data", None)
    with Collector(broker, timeout=300) as client:
        client.call("hva-collector", "ping")
        answers.put("ready")
        n = 0
        while (command := commands.get()) is not None:
            name, seconds, argument = command
            endpoint, method, arguments = table[name]
            latencies, began = [], time.perf_counter()
            while time.perf_counter() - began < seconds:
                n += 1
                values = [argument] if arguments is None else arguments(hot, n)
                if name == "update_instance":  # one row per caller: no lock queue
                    values[0] = hot.update_targets[index % len(hot.update_targets)]
                started = time.perf_counter()
                client.call(endpoint, method, *values)
                latencies.append(time.perf_counter() - started)
            answers.put({"name": name, "done": len(latencies), "latencies": latencies,
                         "elapsed": time.perf_counter() - began})


def _group(pid: int) -> list[int]:
    """The worker's processes: its process group (main process and pool children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid:  # pgrp
                found.append(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    total = 0
    for member in _group(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    total = 0
    for member in _group(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


if __name__ == "__main__":
    main()
