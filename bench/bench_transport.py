"""Round trips through the Collector, as ratios to baselines measured in the same run.

Baselines: a raw Redis PING and a bare Celery round trip (``hva-collector.ping``: a task
that touches no database). Measured: get_instance (a full document) and update_instance
(a write committed before the reply), both on SQLite; the after-commit job delivery
(update_instance -> terminated -> delete_volume job in the node queue) against a raw
LPUSH/BLPOP pair. Run: ``.venv/bin/python -m bench.bench_transport [--n 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import redis

from collector import sample_data
from collector.client import Collector
from collector.db import unit_of_work
from collector.migrate import upgrade
from tests.servers import RedisServer, start_worker


def timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(20, n)):  # warm up connections and caches
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"median_ms": statistics.median(samples) * 1000,
            "p95_ms": samples[int(len(samples) * 0.95) - 1] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.sqlite3"
        upgrade(db_url)
        broker = f"{server.url}/0"
        worker = start_worker(db_url, broker, extra_args=("--concurrency", "4"))
        try:
            with unit_of_work(db_url) as session:
                host = sample_data.host_node(session)
                inst_ids = [sample_data.running_instance(session, host).canonical_uuid
                            for _ in range(args.n + 20)]
            conn = redis.Redis.from_url(broker)
            client = Collector(broker, timeout=30)
            hva = client.rpc("hva-collector")
            results = {
                "raw redis PING": timed(conn.ping, args.n),
                "bare celery round trip (ping)": timed(lambda: hva.ping(), args.n),
                "get_instance": timed(lambda: hva.get_instance(inst_ids[0]), args.n),
            }
            states = iter(["halting", "halted", "starting", "running"] * args.n)
            results["update_instance (commit, then reply)"] = timed(
                lambda: hva.update_instance(inst_ids[1], {"state": next(states)}), args.n)

            def raw_job() -> None:
                conn.lpush("bench.raw", b"x")
                conn.blpop(["bench.raw"], timeout=5)

            results["raw LPUSH+BLPOP"] = timed(raw_job, args.n)
            pending = iter(inst_ids[2:])

            def terminate_and_see_job() -> None:
                inst = next(pending)
                before = conn.llen(queue)
                hva.update_instance(inst, {"state": "terminated"})
                while conn.llen(queue) < before + 1:
                    time.sleep(0.0005)

            queue = f"local-store-handle.{host.node_id}"
            results["terminate -> job in node queue"] = timed(terminate_and_see_job,
                                                              min(args.n, len(inst_ids) - 22))
            client.close()
        finally:
            worker.stop()
    celery = results["bare celery round trip (ping)"]["median_ms"]
    raw = results["raw redis PING"]["median_ms"]
    print(f"{'measurement':40} {'median ms':>10} {'p95 ms':>8} {'x celery':>9} {'x redis':>8}")
    for name, r in results.items():
        print(f"{name:40} {r['median_ms']:10.2f} {r['p95_ms']:8.2f} "
              f"{r['median_ms'] / celery:9.2f} {r['median_ms'] / raw:8.1f}")


if __name__ == "__main__":
    main()
