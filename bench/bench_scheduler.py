"""Placement throughput: 10,000 instances onto 1,000 hosts by 2 scheduler processes on
PostgreSQL (a private server started for the run).

Each instance asks for 1 core, 2 GB, a 10 GB local boot volume and one vif (a MAC and an
address of one /16 network, so every placement also takes the network's IP cursor). The
instances are written up front in ``scheduling``; the run then releases their placement
requests at ``--rate`` per second (0 = all at once: a backlog) onto a queue that 2 processes
drain. Each takes up to ``--batch`` queued requests at a time and places them in one
transaction (``schedule_instances``, each placement in its own savepoint); ``--batch 1``
calls ``schedule_instance`` in a transaction per request.

Prints placements per second, p50/p99 of request -> placed (release to commit) and of the
placement transaction per placement, the batch size, statements per placement, and the
over-commit count (hosts past
their offering, or counters that disagree with the allocations; must be 0). When the whole
run takes longer than 30 s it also prints where one placement spends its time (cProfile).
Run: ``.venv/bin/python -m bench.bench_scheduler [--instances 10000] [--hosts 1000]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import queue
import statistics
import time
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from collector.db import get_engine, unit_of_work
from collector.db.migrate import upgrade
from collector.models import HostNode, Instance
from collector.scheduling import capacity
from tests.support.servers import PostgresServer
from workers.demo.world import make, placement

GiB = 1 << 30
TARGET_SECONDS = 30.0
DEFAULT_BATCH = 32
RETRIES = 5


def seed(url: str, hosts: int, instances: int) -> list[str]:
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize(16, 65536, 1024 * 1024)] * hosts,
                                cidr="10.128.0.0/16")
        ids = world.awaiting_placement(session, instances, memory_size=2048, disk=10 * GiB)
    with get_engine(url).connect() as conn:  # planner statistics, as a live database has
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return ids


def take(requests: Any, most: int) -> tuple[list[tuple[str, float]], bool]:
    """The next request (waiting for it) and up to ``most - 1`` more already queued;
    True as the second value once the end marker was taken."""
    items: list[tuple[str, float]] = []
    while len(items) < most:
        try:
            item = requests.get() if not items else requests.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return items, True
        items.append(item)
    return items, False


def scheduler_process(url: str, requests: Any, results: Any, batch_size: int) -> None:
    """One scheduler: place what the queue hands out until it gets None; up to ``batch_size``
    queued requests at a time in one transaction (``schedule_instances``), one by one
    (``schedule_instance``) when ``batch_size`` is 1."""
    from collector.scheduling import batch, handlers

    engine = get_engine(url)
    with engine.connect() as conn:  # placements run one at a time: the pool keeps this one
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    cpu_before = time.process_time(), process_cpu(backend)
    statements = [0]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.__setitem__(
        0, statements[0] + 1))
    out, transactions, retries, ended = [], 0, 0, False
    while not ended:
        items, ended = take(requests, batch_size)
        if not items:
            continue
        began = time.time()
        for _ in range(RETRIES):  # a deadlock between batches: run it again, as a worker does
            try:
                with unit_of_work(url) as session:
                    if batch_size == 1:
                        outcomes = [handlers.schedule_instance(session, items[0][0])["outcome"]]
                    else:
                        outcomes = [o["outcome"] for o in batch.schedule_instances(
                            session, [instance_id for instance_id, _ in items])]
                break
            except OperationalError:
                retries += 1
        else:
            raise RuntimeError(f"{len(items)} placements failed {RETRIES} times")
        done = time.time()
        transactions += 1
        out.extend((outcome, done - requested_at, (done - began) / len(items))
                   for outcome, (_, requested_at) in zip(outcomes, items, strict=True))
    cpu = (time.process_time() - cpu_before[0], process_cpu(backend) - cpu_before[1])
    results.put((out, statements[0], transactions, cpu, retries))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process of this machine has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def release(requests: Any, instance_ids: list[str], rate: float, consumers: int) -> None:
    start = time.time()
    for n, instance_id in enumerate(instance_ids):
        if rate:
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        requests.put((instance_id, time.time()))
    for _ in range(consumers):
        requests.put(None)


def over_commits(url: str) -> int:
    with unit_of_work(url, readonly=True) as session:
        sums = session.execute(select(Instance.host_node_id, func.sum(Instance.cpu_cores),
                                      func.sum(Instance.memory_size))
                               .where(Instance.terminated_at.is_(None),
                                      Instance.host_node_id.is_not(None))
                               .group_by(Instance.host_node_id)).all()
        offering = {h.id: h for h in session.scalars(select(HostNode))}
        bad = sum(1 for host_id, cpu, mem in sums
                  if cpu > offering[host_id].offering_cpu_cores
                  or mem > offering[host_id].offering_memory_size)
        bad += sum(1 for h in offering.values()
                   if h.used_cpu_cores > h.offering_cpu_cores
                   or h.used_memory_size > h.offering_memory_size)
    with unit_of_work(url) as session:
        drift = capacity.reconcile(session)
        session.rollback()
    return bad + len(drift)


def profile_one(url: str, batch_size: int) -> str:
    """cProfile of one more transaction as the run made them (one placement, or a batch of
    ``batch_size``; same world, after its predecessors), with the time per placement by
    package; a first one warms this process's statement cache, as a long-running
    worker's is."""
    from collector.scheduling import batch, handlers

    def place(instance_ids: list[str]) -> None:
        with unit_of_work(url) as session:
            if batch_size == 1:
                handlers.schedule_instance(session, instance_ids[0])
            else:
                batch.schedule_instances(session, instance_ids)

    warm_up = [seed_extra(url) for _ in range(batch_size)]
    measured = [seed_extra(url) for _ in range(batch_size)]
    place(warm_up)
    profiler = cProfile.Profile()
    profiler.enable()
    place(measured)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    by_package: dict[str, float] = {}
    for (path, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = path.split("site-packages/", 1)[1].split("/")[:2] if "site-packages/" in path \
            else ["collector" if "/collector/" in path else "other"]
        name = "/".join(package[:2] if package[0] == "sqlalchemy" else package[:1])
        by_package[name] = by_package.get(name, 0.0) + own
    text.write("ms per placement by package (own time; psycopg includes waiting for the "
               "server):\n")
    for name, own in sorted(by_package.items(), key=lambda item: -item[1])[:8]:
        text.write(f"  {own * 1000 / batch_size:7.2f}  {name}\n")
    stats.sort_stats("cumulative").print_stats(25)
    return text.getvalue()


def seed_extra(url: str) -> str:
    with unit_of_work(url) as session:
        template = session.scalars(select(Instance).limit(1)).one()
        [instance_id] = make.awaiting_placement(session, 1, template.image, memory_size=2048,
                                                disk=10 * GiB,
                                                request_params=template.request_params)
        return instance_id


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="placement requests per second (0: all at once)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help="most placements per transaction (1: schedule_instance each)")
    parser.add_argument("--profile", action="store_true", help="always print the profile")
    args = parser.parse_args()
    with PostgresServer() as server:
        url = server.create_database("bench_scheduler")
        upgrade(url)
        seeded_at = time.time()
        ids = seed(url, args.hosts, args.instances)
        print(f"seeded {args.hosts} hosts and {len(ids)} instances in "
              f"{time.time() - seeded_at:.1f} s")
        context = multiprocessing.get_context("spawn")
        requests, results = context.Queue(), context.Queue()
        workers = [context.Process(target=scheduler_process,
                                   args=(url, requests, results, args.batch))
                   for _ in range(args.processes)]
        for worker in workers:
            worker.start()
        time.sleep(2)  # interpreters up before the clock starts
        load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
        started = time.time()
        release(requests, ids, args.rate, args.processes)
        collected = [results.get() for _ in workers]
        elapsed = time.time() - started
        for worker in workers:
            worker.join()
        outcomes = [o for chunk, *_ in collected for o in chunk]
        statements = sum(c[1] for c in collected)
        transactions = sum(c[2] for c in collected)
        python_cpu = sum(c[3][0] for c in collected)
        server_cpu = sum(c[3][1] for c in collected)
        placed = sum(1 for o in outcomes if o[0] == "placed")
        latency = [o[1] * 1000 for o in outcomes]
        service = [o[2] * 1000 for o in outcomes]
        print(f"{placed} placed, {len(outcomes) - placed} not, by {args.processes} processes "
              f"in {elapsed:.1f} s: {len(outcomes) / elapsed:.0f} placements/s")
        print(f"request -> placed ms: p50 {percentile(latency, 0.5):.1f}  "
              f"p99 {percentile(latency, 0.99):.1f}"
              f"{'  (all requested at once: queueing included)' if not args.rate else ''}")
        print(f"batch: up to {args.batch} placements per transaction, "
              f"{len(outcomes) / max(1, transactions):.1f} on average; "
              f"{sum(c[4] for c in collected)} transaction(s) run again after a deadlock")
        print(f"placement transaction ms per placement: p50 {percentile(service, 0.5):.1f}  "
              f"p99 {percentile(service, 0.99):.1f}  mean {statistics.mean(service):.1f}")
        print(f"SQL statements per placement: {statements / max(1, len(outcomes)):.1f}")
        per = 1000 / max(1, len(outcomes))
        print(f"CPU ms per placement: scheduler processes {python_cpu * per:.1f}, their "
              f"PostgreSQL backends {server_cpu * per:.1f}; wall ms per placement and process "
              f"{elapsed * args.processes * per:.1f} (the rest waits: locks, other load)")
        print(f"load average: {load_before} before, "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} after "
              f"({os.cpu_count()} cores)")
        print(f"over-commits: {over_commits(url)}")
        if elapsed > TARGET_SECONDS or args.profile:
            print(f"\nwhere one placement spends its time (target {TARGET_SECONDS:.0f} s "
                  f"for the run):")
            print(profile_one(url, args.batch))


if __name__ == "__main__":
    main()
