"""hva-collector's heavy answers, as ratios to a bare Celery round trip in the same run.

Seeds a node with 1,000 vnics in 50 security groups (SQLite, embedded default), then
times get_instance and the per-node documents (netfilter, dhcp, resource monitor)
through a real worker against
``hva-collector.ping`` (a task that touches no database) and a raw Redis PING.
Run: ``.venv/bin/python -m bench.bench_hva [--n 50] [--vnics 1000]``.
"""

from __future__ import annotations

import argparse
import tempfile

import redis

from bench.bench_transport import timed
from collector import sample_data
from collector.client import Collector
from collector.db import unit_of_work
from collector.migrate import upgrade
from collector.models import SecurityGroupReference
from tests.servers import RedisServer, start_worker


def seed(db_url: str, vnics: int, groups: int = 50) -> tuple[str, str, str]:
    with unit_of_work(db_url) as session:
        host = sample_data.host_node(session)
        net = sample_data.network(session, "10.64.0.0/16")
        sgs = [sample_data.security_group(session, rule=f"tcp:{22 + i},{22 + i},ip4:0.0.0.0")
               for i in range(groups)]
        for a, b in zip(sgs, sgs[1:], strict=False):
            session.add(SecurityGroupReference(referencer_id=a.id, referencee_id=b.id))
        first = None
        for i in range(vnics // 4):
            inst = sample_data.instance(session, host)
            first = first or inst
            for j in range(4):
                n = i * 4 + j
                sample_data.vif(session, inst, net, ipv4=f"10.64.{n // 250}.{n % 250 + 2}",
                                security_groups=[sgs[n % groups]], device_index=j)
        return host.node_id, first.canonical_uuid, net.canonical_uuid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--vnics", type=int, default=1000)
    args = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.sqlite3"
        upgrade(db_url)
        node_id, inst_id, net_id = seed(db_url, args.vnics)
        broker = f"{server.url}/0"
        worker = start_worker(db_url, broker, extra_args=("--concurrency", "2"))
        try:
            client = Collector(broker, timeout=60)
            hva = client.rpc("hva-collector")
            conn = redis.Redis.from_url(broker)
            results = {
                "raw redis PING": timed(conn.ping, args.n),
                "bare celery round trip (ping)": timed(lambda: hva.ping(), args.n),
                "get_instance": timed(lambda: hva.get_instance(inst_id), args.n),
                f"get_netfilter_data ({args.vnics} vnics)": timed(
                    lambda: hva.get_netfilter_data(node_id), args.n),
                f"get_dhcp_conf ({args.vnics} vnics)": timed(
                    lambda: hva.get_dhcp_conf(net_id), args.n),
                f"get_resource_monitor_data ({args.vnics})": timed(
                    lambda: hva.get_resource_monitor_data(node_id), args.n),
            }
            client.close()
        finally:
            worker.stop()
    celery = results["bare celery round trip (ping)"]["median_ms"]
    print(f"{'measurement':40} {'median ms':>10} {'p95 ms':>8} {'x celery':>9}")
    for name, r in results.items():
        print(f"{name:40} {r['median_ms']:10.2f} {r['p95_ms']:8.2f} {r['median_ms'] / celery:9.2f}")


if __name__ == "__main__":
    main()
