"""``python -m bench relay``: what relaying an outbox row to Redis costs.

Rows shaped like a placement's (a boot job to a node queue, ``instance.scheduled`` to the
events exchange) go through ``tasks.relay._publish_all`` in passes of 1, 2 and 16 rows, as
the after-commit relay sends them. Two baselines run in the same process, against the same
Redis:

- raw Redis: one ``LPUSH`` of a message of the same size per row (the floor);
- before: the same rows through ``publish_one`` one by one, on kombu's own Redis transport
  (a redis-py client built per command): how the relay published before.

Printed: CPU ms per row, and each as a ratio of raw Redis. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

PASSES = (1, 2, 16)


def _rows(n: int) -> list[Any]:
    rows = []
    for i in range(n):
        rows.append(SimpleNamespace(
            id=2 * i, kind="job", name="local-store-handle.run_local_store",
            queue=f"local-store-handle.node{i % 50}", routing_key=None,
            task_id=str(uuid.uuid4()), payload={"args": [f"i-{i:08x}"], "kwargs": {}}))
        rows.append(SimpleNamespace(
            id=2 * i + 1, kind="event", name="events.deliver", queue=None,
            routing_key="instance.scheduled.collector", task_id=str(uuid.uuid4()),
            payload={"args": ["instance.scheduled", [f"i-{i:08x}"], "collector"],
                     "kwargs": {}}))
    return rows


def _cpu_ms_per_row(send: Callable[[list[Any]], None], rows: list[Any], size: int) -> float:
    send(rows[:size])  # connections, declarations
    started = time.process_time()
    for k in range(0, len(rows), size):
        send(rows[k:k + size])
    return 1000 * (time.process_time() - started) / len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench relay", description=__doc__)
    parser.add_argument("--rows", type=int, default=2000, help="outbox rows per pass size")
    parser.add_argument("--json", help="where to write the figures")
    args = parser.parse_args(argv)
    os.environ.setdefault("COLLECTOR_SIGNING_SECRET", uuid.uuid4().hex)

    from celery import Celery

    from collector.config import load_settings, signing_credential
    from collector.signing import COLLECTOR
    from tasks import relay
    from tests.support.servers import RedisServer
    from workers.agent.signing import sign_messages

    redis_server = RedisServer().start()
    try:
        os.environ["COLLECTOR_BROKER_URL"] = redis_server.url
        app = relay.publisher(redis_server.url)
        # The relay as it published before: the same signed rows, kombu's own transport
        # (a redis-py client built per command), a publish each.
        stock = Celery("relay-before", set_as_current=False)
        stock.conf.update({key: app.conf[key] for key in (
            "broker_url", "task_serializer", "accept_content", "task_create_missing_queues",
            "task_publish_retry_policy", "broker_transport_options")},
            broker_transport="kombu.transport.redis:Transport")
        sign_messages(stock, signing_credential(load_settings(), COLLECTOR))
        client = redis_server.client()
        body = json.dumps({"body": "x" * 700, "headers": {}, "properties": {}})
        rows = _rows(args.rows // 2)

        def raw(batch: list[Any]) -> None:
            for row in batch:
                client.lpush(row.queue or "events", body)

        def stock_kombu(batch: list[Any]) -> None:
            for row in batch:
                relay.publish_one(stock, row, 3600)

        figures: dict[str, Any] = {"rows": len(rows), "passes": {}}
        print(f"relay bench: {len(rows)} rows a pass size (half boot jobs, half events)")
        for size in PASSES:
            floor = _cpu_ms_per_row(raw, rows, size)
            before = _cpu_ms_per_row(stock_kombu, rows, size)
            now = _cpu_ms_per_row(lambda batch: relay._publish_all(app, batch, 3600), rows,
                                  size)
            figures["passes"][size] = {"raw_redis_ms": floor, "stock_kombu_ms": before,
                                       "relay_ms": now}
            print(f"  {size:>2} rows a pass: relay {now:.3f} ms CPU/row ({now / floor:.1f}x raw "
                  f"Redis {floor:.3f});  before (a publish each, stock kombu) {before:.3f} "
                  f"({before / floor:.1f}x)")
        if args.json:
            with open(args.json, "w") as out:
                json.dump(figures, out, indent=2)
    finally:
        redis_server.stop()
