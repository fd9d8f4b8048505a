"""Placement end to end: ``python -m bench placement``.

It starts a Redis server and a PostgreSQL cluster, seeds a placement world (``--hosts`` hosts
of 16 cores, 64 GB and 1 TB of local disk, a /16 network, a local-boot image; no agents:
the boot jobs wait in their node queues), then the workers the path needs, one per role
as deployed, each with its role's pool (``api``, ``scheduler`` (prefork x2),
``jobqueue-proxy`` (the ledger callbacks), ``events`` (the dispatcher; ``instance.scheduled``
is not sent while no agent subscribes to it, as here); no beat: the relay publishes after each commit). The workers
are ``bench.placement_worker``: ``collector worker`` that also counts its SQL statements
and the CPU time of its relay. The boot jobs' take deadline is a day: no agent takes them,
and re-sending them (``collector.services.jobs.redelivery``) is no placement's cost.

Before the single phase, a baseline in the same run: the callers make as many ``api.ping``
calls as half the single phase's requests (the api's cheapest call: a Celery round trip
through the api worker, Redis and the result backend), and the calls/s and CPU per call
are printed; the single phase's placements/s is then also given per ping/s. This 2-core
machine's speed moves by a third from spell to spell, within minutes: the baseline says
how fast it was then (it moves within seconds too, so the ratio is rough).

Two phases, each timed from the first request to the last boot job published:

- single: ``--callers`` processes call ``api.create_instance`` back to back,
  ``--requests`` in all (1 core, 2 GB, one vif);
- bulk (``--bulk`` instances, 0: none): ``api.create_instances(params, count, min_count)``
  in calls of ``--bulk-count`` when the api has it; else (said so in the output) the
  scheduler's batch path: the instances are written up front as the API leaves them
  (``scheduling``) and the callers call ``scheduler.schedule_instances`` with
  ``--bulk-count`` ids a call (``--bulk-via scheduler`` forces this path).

"Placed" is the moment the instance's boot job (``local-store-handle.<node>
run_local_store``) is published: its outbox row's ``sent_at``, stamped by the relay right
after the publish. A caller sends its next request once the api has answered, not once the
instance is placed: when the api accepts faster than the scheduler places, the queue in
between grows and its wait is in p50 / p99 (the count still unplaced at the last answer
is printed beside them). Each phase prints placements/s, p50 / p99 of request -> placed, the
CPU milliseconds per placement of each role (each worker's process group from /proc, the
relay's share taken out and shown as a role of its own; PostgreSQL: the postmaster and
its children; Redis: INFO cpu; the callers), the workers' SQL statements and PostgreSQL's
transactions per placement, and the over-commit count (hosts whose counters or whose
allocations exceed what they offer after allocation ratios, plus what
``capacity.reconcile`` would correct; must be 0). Then it prints the issue's targets, met
or missed (never asserted), and writes everything as JSON to
``bench/results/placement-<time>.json`` with the load average.

``--hosts 1000,5000`` runs each size in a fresh database and compares the placement rates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select, text

from bench.report import load, write_report
from collector.db import dispose_engines, get_engine, unit_of_work
from collector.db.migrate import upgrade
from tests.support.servers import PostgresServer, RedisServer, WorkerProcess
from workers.demo.world import make, placement

GiB = 1 << 30
ROLES = ("api", "scheduler", "jobqueue-proxy", "events")
BOOT_QUEUE = "local-store-handle."
HOST = placement.HostSize(16, 65536, 1024 * 1024)
TODAY = {"placements_per_s": 25.8, "p50_s": 0.53, "p99_s": 0.85,
         "at": "8 callers, 1,000 hosts, 2,000 creates"}
SINGLE_TARGET = 100.0  # placements/s, 8 callers, 1,000 hosts
BULK_TARGET_S, BULK_TARGET_COUNT = 30.0, 10_000  # onto 1,000 hosts
SCALE_SPREAD = 0.20  # 5,000 hosts against 1,000
STALL_S = 120.0  # no placement for this long: the phase ends unfinished
POLL_MARGIN_S = 10.0  # a poll reads again what was stamped this long before the newest seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench placement",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1000", help="host counts, comma-separated")
    parser.add_argument("--requests", type=int, default=2000, help="single create_instance calls")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--bulk", type=int, default=0, help="instances placed in bulk (0: none)")
    parser.add_argument("--bulk-count", type=int, default=500, help="instances per bulk call")
    parser.add_argument("--bulk-via", choices=("auto", "api", "scheduler"), default="auto",
                        help="api.create_instances, scheduler.schedule_instances, or the "
                             "first when the api has it")
    parser.add_argument("--json", default=None, help="where to write the figures")
    args = parser.parse_args(argv)
    # Every message signed and checked, as deployed: this run's signing secret, inherited by
    # the workers and the callers (who sign as the operator).
    os.environ["COLLECTOR_SIGNING_SECRET"] = secrets.token_hex(32)
    sizes = [int(h) for h in args.hosts.split(",") if h]
    report: dict[str, Any] = {
        "bench": "placement", "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_at_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "placed_means": "the boot job's outbox row stamped sent (outbox.sent_at)",
        "runs": []}
    print(f"placement bench {report['started']}  {os.cpu_count()} cpus  python "
          f"{platform.python_version()}  load {load()}")
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        # Statistics that follow the tables as they grow, as a live database's do: with
        # autovacuum's default minute, a table analyzed empty at seeding keeps plans made
        # for an empty table (sequential scans) for most of a phase.
        postgres = stack.enter_context(PostgresServer(settings={"autovacuum_naptime": "1"}))
        for n, hosts in enumerate(sizes):
            run = Run(hosts, args, server, postgres, n + 1)
            try:
                report["runs"].append(run.all())
            finally:
                run.stop()
    report["targets"] = targets(report["runs"], args)
    write_report(report, args.json, "placement-")



class Run:
    """One host count: its database, its world, its workers, both phases."""

    def __init__(self, hosts: int, args: argparse.Namespace, server: RedisServer,
                 postgres: PostgresServer, db_number: int) -> None:
        self.hosts, self.args, self.postgres = hosts, args, postgres
        self.broker = server.url + f"/{db_number}"
        self.redis = redis.Redis.from_url(server.url)
        self.url = postgres.create_database(f"placement_{hosts}_{db_number}")
        self.workers: dict[str, WorkerProcess] = {}
        self.stats_dir = tempfile.mkdtemp(prefix="bench-placement-")
        upgrade(self.url)
        wanted = args.requests + args.bulk
        if wanted > hosts * HOST.cpu_cores:
            print(f"warning: {wanted} instances of 1 core onto {hosts} hosts of "
                  f"{HOST.cpu_cores} cores: some will find no room")
        began = time.perf_counter()
        with unit_of_work(self.url) as session:
            world = placement.build(session, [HOST] * hosts, cidr="10.128.0.0/16")
            self.ids = world.ids()
        with get_engine(self.url).connect() as conn:  # planner statistics, as a live database
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        print(f"\n== {hosts} hosts ==  seeded in {time.perf_counter() - began:.1f} s")
        self.bulk_api = args.bulk_via == "api" or (args.bulk_via == "auto" and _has_bulk_api())

    def params(self) -> dict[str, Any]:
        return {"image_id": self.ids["image"], "hypervisor": "kvm", "cpu_cores": 1,
                "memory_size": 2048, "vifs": {"eth0": {"network": self.ids["network"]}}}

    def start(self) -> None:
        # No agent takes the boot jobs: without a long take deadline for them, every one
        # would be sent again after 30 s (``redelivery``), work no deployment has.
        env = {"BENCH_PLACEMENT_STATS": self.stats_dir,
               "COLLECTOR_JOB_TAKE_DEADLINES": "local-store-handle=86400"}
        for role in ROLES:  # each with its role's pool (workers.roles), as the Procfile has
            self.workers[role] = WorkerProcess(self.url, self.broker, role, env=env, argv=[
                "-m", "bench.placement_worker", "--role", role])
        for worker in self.workers.values():
            worker.wait_ready(ready_text="ready.")

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.redis.close()
        dispose_engines()
        shutil.rmtree(self.stats_dir, ignore_errors=True)

    def all(self) -> dict[str, Any]:
        self.start()
        result: dict[str, Any] = {"hosts": self.hosts, "load_at_start": os.getloadavg()}
        context = multiprocessing.get_context("spawn")
        work, answers = context.Queue(), context.Queue()
        callers = [context.Process(target=_caller, args=(self.broker, work, answers))
                   for _ in range(self.args.callers)]
        for process in callers:
            process.start()
        try:
            for _ in callers:
                answers.get(timeout=120)  # ready: connected, the api answered once
            self.callers = [p.pid for p in callers]
            self.warm(work, answers)
            if self.args.requests:
                result["baseline"] = self.baseline(work, answers)
                result["single"] = self.phase("single", work, answers)
                result["single"]["per_baseline"] = (result["single"]["placements_per_s"]
                                                    / result["baseline"]["calls_per_s"])
                print(f"  placements/s per api.ping call/s just before: "
                      f"{result['single']['per_baseline']:.3f}")
            if self.args.bulk:
                result["bulk"] = self.phase("bulk", work, answers)
        finally:
            for _ in callers:
                work.put(None)
            for process in callers:
                process.join(30)
        result["over_commits"] = over_commits(self.url)
        print(f"over-commits after both phases: {result['over_commits']['total']} "
              f"({result['over_commits']})")
        result["load_at_end"] = os.getloadavg()
        return result

    def warm(self, work: Any, answers: Any) -> None:
        """A few placements before the clock starts (connections, compiled statements)."""
        for n in range(2 * self.args.callers):
            work.put(("single", n, self.params()))
        placed = [answers.get(timeout=300) for _ in range(2 * self.args.callers)]
        self.wait([p["id"] for p in placed], {p["id"]: p["t0"] for p in placed}, 0, 0)

    def baseline(self, work: Any, answers: Any) -> dict[str, Any]:
        """The machine's speed now, through the same stack: the callers' api.ping calls (the
        api's cheapest call: a Celery round trip through the api worker, Redis, the result
        backend), as many as the single phase makes calls, at the same concurrency. Runs on
        this 2-core machine vary by a sixth or more with its speed; the single phase's
        placements/s is also given per ping/s measured here, a figure that varies less."""
        calls = max(200, self.args.requests // 2)
        before = self.counters()
        started = time.time()
        for _ in range(calls):
            work.put(("ping", None, None))
        for _ in range(calls):
            answers.get(timeout=600)
        elapsed = max(1e-9, time.time() - started)
        after = self.counters()
        per = 1000 / calls
        cpu = {role: (after["cpu"][role] - before["cpu"][role]) * per
               for role in ("api", "redis", "callers")}
        out = {"calls": calls, "calls_per_s": calls / elapsed, "cpu_ms_per_call": cpu}
        print(f"\nbaseline: {calls} api.ping calls, {self.args.callers} callers: "
              f"{out['calls_per_s']:.0f} calls/s; CPU ms per call: " + "  ".join(
                  f"{role} {ms:.2f}" for role, ms in cpu.items()))
        return out

    # -- one phase ---------------------------------------------------------------------------

    def phase(self, name: str, work: Any, answers: Any) -> dict[str, Any]:
        since_outbox, since_instance = self.high_water()
        if name == "bulk" and not self.bulk_api:
            with unit_of_work(self.url) as session:  # as the API leaves them: scheduling
                from collector.models import Image, Network

                image = Image.by_cuuid(session, self.ids["image"])
                network = Network.by_cuuid(session, self.ids["network"])
                seeded = make.awaiting_placement(session, self.args.bulk, image, network,
                                                 hypervisor="kvm", memory_size=2048,
                                                 disk=10 * GiB)
        time.sleep(1.5)  # the seeding's statistics flushed; the workers idle
        before = self.counters()
        started = time.time()
        requested: dict[str, float] = {}
        answered: list[float] = []
        mode = "api.create_instance"
        if name == "single":
            for n in range(self.args.requests):
                work.put(("single", n, self.params()))
            for _ in range(self.args.requests):
                done = answers.get(timeout=600)
                requested[done["id"]] = done["t0"]
                answered.append(done["t1"] - done["t0"])
        else:
            size = self.args.bulk_count
            if self.bulk_api:
                mode = "api.create_instances"
                counts = [min(size, self.args.bulk - k) for k in range(0, self.args.bulk, size)]
                for count in counts:
                    work.put(("create_instances", count, self.params()))
            else:
                mode = "scheduler.schedule_instances (" + (
                    "--bulk-via scheduler)" if self.args.bulk_via == "scheduler"
                    else "api.create_instances not available)")
                counts = [seeded[k:k + size] for k in range(0, len(seeded), size)]
                for chunk in counts:
                    work.put(("schedule_instances", chunk, None))
            for _ in counts:
                done = answers.get(timeout=900)
                for instance_id in done["ids"]:
                    requested[instance_id] = done["t0"]
                answered.append(done["t1"] - done["t0"])
        last_answer = time.time()
        placed, failed = self.wait(list(requested), requested, since_outbox, since_instance)
        ended = max(placed.values(), default=time.time())
        time.sleep(1.5)  # PostgreSQL's statistics flushed (at most once a second a backend)
        after = self.counters()
        backlog = sum(1 for at in placed.values() if at > last_answer)
        return self.summary(name, mode, started, ended, requested, placed, failed, answered,
                            backlog, before, after)

    def high_water(self) -> tuple[int, int]:
        with get_engine(self.url).connect() as conn:
            return (conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM outbox").scalar(),
                    conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM instances").scalar())

    def wait(self, ids: list[str], requested: dict[str, float], since_outbox: int,
             since_instance: int) -> tuple[dict[str, float], set[str]]:
        """Poll (every 0.5 s) until each instance's boot job is sent or its placement
        failed (``terminated``); returns when each was placed (epoch seconds), and the
        failed ones."""
        from collector.models import Instance

        wanted = set(ids)
        placed: dict[str, float] = {}
        failed: set[str] = set()
        last, progress = time.time(), 0
        # Only what was stamped since the last poll (less a margin for stamps committed out
        # of order): the bench's own reads must not grow with the rows already seen.
        sent = text("SELECT q.resource_id, o.sent_at FROM outbox o JOIN queued_jobs q "
                    "ON q.task_id = o.task_id WHERE o.id > :since AND o.sent_at >= :after "
                    "AND q.queue_name LIKE :queue")
        after = datetime(1970, 1, 1)
        while True:
            with unit_of_work(self.url, readonly=True) as session:
                newest = after
                for resource_id, sent_at in session.execute(sent, {
                        "since": since_outbox, "after": after, "queue": BOOT_QUEUE + "%"}):
                    newest = max(newest, sent_at)
                    # The first send: a boot job no agent takes is sent again later.
                    if resource_id in wanted and resource_id not in placed:
                        stamped = sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)
                        placed[resource_id] = stamped.timestamp()
                after = max(after, newest - timedelta(seconds=POLL_MARGIN_S))
                failed = {f"{Instance.prefix}-{uuid}" for uuid in session.scalars(
                    select(Instance.uuid).where(Instance.id > since_instance,
                                                Instance.state == "terminated"))} & wanted
            if len(placed) + len(failed) >= len(wanted):
                return placed, failed
            if len(placed) + len(failed) > progress:
                progress, last = len(placed) + len(failed), time.time()
            elif time.time() - last > STALL_S:
                print(f"  stalled: {len(wanted) - progress} not placed after {STALL_S:.0f} s "
                      f"without progress")
                return placed, failed
            time.sleep(0.5)

    # -- counters ---------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        cpu = {role: _group_cpu(worker.pid) for role, worker in self.workers.items()}
        cpu["postgresql"] = _postgres_cpu(self.postgres)
        info = self.redis.info("cpu")
        cpu["redis"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        cpu["callers"] = sum(_cpu(pid) for pid in self.callers)
        relay, statements = {}, 0
        for path in Path(self.stats_dir).iterdir():
            if not path.name.isdigit():
                continue
            try:
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            statements += counts["statements"]
            role = next((r for r, w in self.workers.items()
                         if int(path.name) in _group(w.pid)), None)
            if role:
                relay[role] = relay.get(role, 0.0) + counts["relay_cpu_s"]
        with get_engine(self.url).connect() as conn:
            row = conn.execute(text(
                "SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, tup_inserted, "
                "tup_updated, tup_deleted FROM pg_stat_database "
                "WHERE datname = current_database()")).one()
        return {"cpu": cpu, "relay": relay, "statements": statements,
                "pg": dict(zip(("transactions", "tup_returned", "tup_fetched", "tup_inserted",
                                "tup_updated", "tup_deleted"), row, strict=True))}

    def summary(self, name: str, mode: str, started: float, ended: float,
                requested: dict[str, float], placed: dict[str, float], failed: set[str],
                answered: list[float], backlog: int, before: dict[str, Any],
                after: dict[str, Any]) -> dict[str, Any]:
        count = len(placed)
        elapsed = max(1e-9, ended - started)
        latency = [placed[i] - requested[i] for i in placed]
        per = 1000 / max(1, count)
        cpu = {role: (after["cpu"][role] - before["cpu"][role]) for role in after["cpu"]}
        relay = {role: after["relay"].get(role, 0.0) - before["relay"].get(role, 0.0)
                 for role in after["relay"]}
        for role, spent in relay.items():
            cpu[role] -= spent
        cpu["relay"] = sum(relay.values())
        order = [*ROLES, "relay", "postgresql", "redis", "callers"]
        out = {
            "mode": mode, "requested": len(requested), "placed": count, "failed": len(failed),
            "not_finished": len(requested) - count - len(failed), "seconds": elapsed,
            "placements_per_s": count / elapsed,
            "p50_s": _pct(latency, 0.5), "p99_s": _pct(latency, 0.99),
            "answer_p50_s": _pct(answered, 0.5), "answer_p99_s": _pct(answered, 0.99),
            "backlog_at_last_answer": backlog,
            "cpu_ms_per_placement": {role: cpu[role] * per for role in order},
            "relay_by_worker_ms_per_placement": {r: s * per for r, s in relay.items()},
            "statements_per_placement": (after["statements"] - before["statements"]) / max(1, count),
            "pg_per_placement": {k: (after["pg"][k] - before["pg"][k]) / max(1, count)
                                 for k in after["pg"]},
        }
        print(f"\n{name} ({mode}), {self.hosts} hosts, {self.args.callers} callers: "
              f"{count} placed, {len(failed)} failed, {out['not_finished']} unfinished, in "
              f"{elapsed:.1f} s: {out['placements_per_s']:.1f} placements/s")
        print(f"  request -> placed (boot job sent): p50 {out['p50_s']:.3f} s  p99 "
              f"{out['p99_s']:.3f} s;  call answered: p50 {out['answer_p50_s']:.3f} s  p99 "
              f"{out['answer_p99_s']:.3f} s")
        print(f"  not yet placed when the last call was answered: {backlog} (the api "
              f"accepting faster than the scheduler places: their wait is in p50 / p99)")
        print("  CPU ms per placement: " + "  ".join(
            f"{role} {ms:.1f}" for role, ms in out["cpu_ms_per_placement"].items())
            + f"  (total {sum(out['cpu_ms_per_placement'].values()):.1f}; relay by worker: "
            + ", ".join(f"{r} {ms:.1f}" for r, ms in
                        out["relay_by_worker_ms_per_placement"].items()) + ")")
        pg = out["pg_per_placement"]
        print(f"  per placement: {out['statements_per_placement']:.1f} SQL statements from "
              f"the workers; PostgreSQL {pg['transactions']:.1f} transactions, "
              f"{pg['tup_inserted']:.1f} rows inserted, {pg['tup_updated']:.1f} updated, "
              f"{pg['tup_fetched']:.0f} fetched")
        print(f"  load {load()}")
        return out


def _has_bulk_api() -> bool:
    """Whether the api endpoint has ``create_instances`` (being added beside this bench)."""
    import tasks.endpoints.api  # noqa: F401 - registers the api's tasks
    from tasks.app import app

    return "api.create_instances" in app.tasks


def _caller(broker: str, work: Any, answers: Any) -> None:
    """One caller: runs what ``work`` hands it until None, answering each on ``answers``."""
    from workers.agent.client import Collector

    with Collector(broker, timeout=600) as client:
        client.call("api", "ping")
        answers.put("ready")
        while (item := work.get()) is not None:
            kind, what, params = item
            t0 = time.time()
            if kind == "ping":
                client.call("api", "ping")
                answers.put({"t0": t0, "t1": time.time()})
            elif kind == "single":
                doc = client.call("api", "create_instance", params)
                answers.put({"id": doc["id"], "t0": t0, "t1": time.time()})
            elif kind == "create_instances":
                answer = client.call("api", "create_instances", params, what, what)
                answers.put({"ids": _ids_of(answer), "t0": t0, "t1": time.time()})
            else:
                client.call("scheduler", "schedule_instances", what)
                answers.put({"ids": what, "t0": t0, "t1": time.time()})


def _ids_of(answer: Any) -> list[str]:
    """The instance ids in a bulk answer (a list of documents, or a document holding one)."""
    if isinstance(answer, dict):
        answer = next((v for v in answer.values() if isinstance(v, list)), [])
    return [doc["id"] if isinstance(doc, dict) else doc for doc in answer]


def over_commits(url: str) -> dict[str, int]:
    """Hosts whose used counters, or whose allocations, exceed what they offer (after the
    allocation ratios), and the corrections ``capacity.reconcile`` would make."""
    from collector.models import HostNode
    from collector.models.placement import HostAllocation
    from collector.scheduling import capacity

    with unit_of_work(url) as session:
        cpu, memory = capacity.offered_cpu_cores(), capacity.offered_memory_size()
        counters = session.scalar(select(func.count()).select_from(HostNode).where(
            (HostNode.used_cpu_cores > cpu) | (HostNode.used_memory_size > memory)))
        sums = select(HostAllocation.host_node_id,
                      func.sum(HostAllocation.cpu_cores).label("cpu"),
                      func.sum(HostAllocation.memory_size).label("memory")).group_by(
            HostAllocation.host_node_id).subquery()
        allocations = session.scalar(select(func.count()).select_from(HostNode).join(
            sums, sums.c.host_node_id == HostNode.id).where(
            (sums.c.cpu > cpu) | (sums.c.memory > memory)))
        drift = len(capacity.reconcile(session))
        session.rollback()
    return {"counters_past_offering": counters, "allocations_past_offering": allocations,
            "reconcile_corrections": drift,
            "total": counters + allocations + drift}


def targets(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The issue's targets, each met or missed, and whether it was measured at its size."""
    checks = []
    for run in runs:
        single, bulk = run.get("single"), run.get("bulk")
        if single:
            at_size = run["hosts"] == 1000 and args.callers == 8
            checks.append({"what": f"single, {args.callers} callers, {run['hosts']} hosts: "
                                   f"placements/s >= {SINGLE_TARGET:.0f}",
                           "value": single["placements_per_s"],
                           "met": single["placements_per_s"] >= SINGLE_TARGET,
                           "at_issue_size": at_size,
                           "in_the_way": in_the_way(single, SINGLE_TARGET)})
        if bulk:
            at_size = run["hosts"] == 1000 and bulk["requested"] == BULK_TARGET_COUNT
            rate = BULK_TARGET_COUNT / BULK_TARGET_S
            checks.append({"what": f"bulk ({bulk['mode']}), {bulk['requested']} onto "
                                   f"{run['hosts']} hosts: >= {rate:.0f} placements/s "
                                   f"(10,000 in <= {BULK_TARGET_S:.0f} s)",
                           "value": bulk["placements_per_s"],
                           "met": bulk["placements_per_s"] >= rate
                           and bulk["placed"] == bulk["requested"], "at_issue_size": at_size,
                           "in_the_way": in_the_way(bulk, rate)})
        checks.append({"what": f"over-commits at {run['hosts']} hosts == 0",
                       "value": run["over_commits"]["total"],
                       "met": run["over_commits"]["total"] == 0, "at_issue_size": True})
    singles = [(r["hosts"], r["single"]["placements_per_s"]) for r in runs if r.get("single")]
    if len(singles) >= 2:
        (low, low_rate), (high, high_rate) = singles[0], singles[-1]
        change = high_rate / low_rate - 1
        checks.append({"what": f"single at {high} hosts within {SCALE_SPREAD:.0%} of {low}",
                       "value": change, "met": abs(change) <= SCALE_SPREAD,
                       "at_issue_size": (low, high) == (1000, 5000)})
    print(f"\ntargets (today, from outside: {TODAY['placements_per_s']} placements/s, p50 "
          f"{TODAY['p50_s']} s, p99 {TODAY['p99_s']} s at {TODAY['at']}):")
    for check in checks:
        value = check["value"]
        shown = f"{value:+.1%}" if "within" in check["what"] else \
            (f"{value:.1f}" if isinstance(value, float) else str(value))
        print(f"  {'met   ' if check['met'] else 'MISSED'} {check['what']}: {shown}"
              f"{'' if check['at_issue_size'] else '  (not at the issue size)'}")
        if not check["met"] and check.get("in_the_way"):
            print(f"         in the way: {check['in_the_way']}")
    if not any("within" in c["what"] for c in checks):
        print("  (not measured) 5,000 hosts within 20% of 1,000: run with --hosts 1000,5000")
    return checks


def in_the_way(phase: dict[str, Any], rate: float) -> str:
    """What stands between a phase and ``rate`` placements/s: the CPU per placement the
    machine's cores allow at that rate, against what each role spent (largest first)."""
    spent = phase.get("cpu_ms_per_placement") or {}
    allowed = (os.cpu_count() or 1) * 1000 / rate
    roles = ", ".join(f"{role} {ms:.1f}" for role, ms in
                      sorted(spent.items(), key=lambda item: -item[1]) if ms >= 0.5)
    return (f"{rate:.0f}/s allows {allowed:.1f} ms of CPU per placement in all on "
            f"{os.cpu_count()} cores; spent {sum(spent.values()):.1f}: {roles}")


# -- CPU time from /proc -------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a process; with ``children``, plus its waited-for
    children's."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _group(pid: int) -> list[int]:
    """A worker's processes: its process group (main process and any pool children)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()
            and (fields := _stat(int(e))) is not None and int(fields[2]) == pid]


def _group_cpu(pid: int) -> float:
    return sum(_cpu(member) for member in _group(pid))


def _postgres_cpu(server: PostgresServer) -> float:
    """The postmaster, its live children (backends, background processes) and those that
    have exited."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = _cpu(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None \
                and int(fields[1]) == postmaster:
            total += _cpu(int(entry))
    return total


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

