"""What the placement integration tests (``tests/integration/placement``) share.

- ``placement_cluster(db_url, broker, hosts, ...)``: a placement world served by a real
  worker (role all) and a reference agent per node, as a context manager.
- ``cli(c, *args)``: ``collector`` (``workers.cli``) run against that cluster.
- ``instance_states(c, ids)``: each instance's state and host, as committed.
- ``run_at_once(targets)``: functions in spawned processes, let go together (races).
- ``evacuating_env(directory)``: a worker environment that evacuates hosts gone offline.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import select

from collector import wire
from collector.db import unit_of_work
from collector.models import Instance
from tests.support.servers import start_agent, start_beat, start_worker
from workers.agent.client import Collector
from workers.demo.world import placement
from workers.roles import ALL, queues_for

DEFAULT_HOST = placement.HostSize(8, 16384, 200 * 1024)


@contextmanager
def placement_cluster(db_url: str, broker: str, hosts: int, *, node_prefix: str, cidr: str,
                      env: dict[str, str] | None = None,
                      host_size: placement.HostSize = DEFAULT_HOST, scheduler_workers: int = 0,
                      beat_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """``db_url`` migrated, the broker's Redis database emptied, a placement world seeded
    (``placement.build``: ``hosts`` hosts of ``host_size``, by default 8 cores, 16 GB and
    200 GB of local disk, their node ids after ``node_prefix``; a storage node; a network on
    ``cidr`` whose MAC range has a vendor of its own; a local-boot and a SAN-boot image),
    then a worker (``--concurrency 4``, ``env``) and an agent per host and storage node.
    With ``scheduler_workers``, that worker leaves the scheduler's queues to that many
    ``--role scheduler`` workers of their own; with ``beat_dir``, beat runs too (its
    schedule file there).

    Yields the world's ids (``PlacementWorld.ids``) with ``db_url``, ``broker``, ``redis`` (a
    connection), ``client``, ``api`` (its api proxy), ``agents`` (node id -> agent process)
    and ``env`` (the worker's); stops them all on exit."""
    from collector.db.migrate import upgrade

    upgrade(db_url)
    conn = redis.Redis.from_url(broker)
    conn.flushdb()  # a module's own database: nothing queued by an earlier run
    with unit_of_work(db_url) as session:
        world = placement.build(
            session, [host_size] * hosts, node_prefix=node_prefix,
            storage=True, cidr=cidr, mac_vendor=placement.random_local_mac_vendor(),
            san_image=True).ids()
    leave = set(queues_for(wire.SCHEDULER)) if scheduler_workers else set()
    processes = [start_worker(db_url, broker, extra_args=("--concurrency", "4"), env=env,
                              queues=tuple(q for q in queues_for(ALL) if q not in leave)
                              if leave else ())]
    agents = {}
    try:
        env = processes[0].env
        for _ in range(scheduler_workers):
            processes.append(start_worker(db_url, broker, role=wire.SCHEDULER, env=env))
        if beat_dir is not None:
            processes.append(start_beat(db_url, broker, beat_dir, env=env))
        for node in (*world["hosts"].values(), world["storage_node"]):
            agents[node] = start_agent(node, broker, env=env)
            processes.append(agents[node])
        client = Collector(broker, timeout=30)
        try:
            yield {**world, "db_url": db_url, "broker": broker, "redis": conn, "client": client,
                   "api": client.rpc("api"), "agents": agents, "env": env}
        finally:
            client.close()
    finally:
        for process in processes:
            process.stop()


# Agents heartbeat every 2 s; a silent node is ``timeout`` after 4 s and ``offline`` after 6.
NODE_TIMEOUT_SEC, NODE_OFFLINE_SEC = 4, 6


def evacuating_env(directory: Path, **settings: str) -> dict[str, str]:
    """A worker environment whose scheduler evacuates a host whose node goes offline, with
    short node timeouts, plus ``settings`` (``COLLECTOR_...`` names)."""
    conf = directory / "scheduler.toml"
    conf.write_text("evacuate_on_node_offline = true\n")
    return {"COLLECTOR_SCHEDULER_CONFIG": str(conf),
            "COLLECTOR_NODE_TIMEOUT_SEC": str(NODE_TIMEOUT_SEC),
            "COLLECTOR_NODE_OFFLINE_SEC": str(NODE_OFFLINE_SEC), **settings}


def instance_states(c: dict[str, Any], ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Each instance's state and host (hn-..., None when on none), as committed now."""
    with unit_of_work(c["db_url"], readonly=True) as session:
        rows = session.scalars(select(Instance).where(Instance.uuid.in_(
            [i.split("-", 1)[1] for i in ids])))
        return {r.canonical_uuid: (r.state, r.host_node.canonical_uuid if r.host_node else None)
                for r in rows}


def cli(c: dict[str, Any], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``python -m workers.cli *args`` with the cluster's worker environment."""
    env = {**os.environ, **c["env"], "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_at_once(targets: Sequence[tuple[Any, ...]], timeout: float = 300) -> list[Any]:
    """Each ``(fn, *args)`` in a spawned process (its own engine) as
    ``fn(*args, start, results)``: every one waits for ``start``, set once all have started,
    then puts its one result on ``results``. Returns the results, in the order they came."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=fn, args=(*args, start, results))
                 for fn, *args in targets]
    for process in processes:
        process.start()
    start.set()
    collected = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(30)
    return collected
