"""The Redis master killed under load, Sentinel fails over to an async replica: nothing lost,
nothing run twice, every role back without a restart.

A master (append-only file, fsync every second), one replica and 3 sentinels, all real
``redis-server`` processes on loopback with passwords (``tests.support.redis_cluster``);
PostgreSQL; one worker per role, beat, 2 library agents that write every real run of a job
to a file (a failover cannot take that back); 3 callers pushing jobs to the agents, calling
an RPC, and publishing events through the agent library. The master is killed with SIGKILL
a few seconds into the load. Then:

- every RPC role answers a ping again within 30 s of the kill, no process restarted;
- every job the ledger holds for the agents finished ``success`` and ran exactly once at
  its agent (0 lost, 0 run twice), those whose messages the failover dropped included
  (sent again: ``collector.services.jobs.redelivery``);
- every event has its dispatch receipt and one receipt per subscribed handler;
- no outbox row is left unsent; beat scheduled after the failover;
- no process exited, or one that did exited non-zero.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from redbeat.decoder import RedBeatJSONDecoder
from sqlalchemy import select

from collector import wire
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import EventReceipt, OutboxMessage, QueuedJob
from tasks.routing import ALL, ROLE_QUEUES
from tests.support.checks import wait_for
from tests.support.redis_cluster import SentinelCluster
from tests.support.servers import WorkerProcess, node_env, start_beat
from workers.agent.client import Collector, RpcError, redis_client

pytestmark = pytest.mark.integration

ROLES = [role for role in ROLE_QUEUES if role != ALL]
RECOVERY = 30.0  # seconds after the kill within which every role answers again
SETTLE = 45.0  # seconds after the load within which every job and event is done
LOAD_SECONDS = 12.0
KILL_AFTER = 4.0
EVENT = wire.HvaEvent.INSTANCE_STARTED
SWEEP_ENTRY = "collector:beat:outbox-sweep"  # redbeat's key of beat's outbox-sweep entry
ENV = {"COLLECTOR_JOB_TAKE_DEADLINE": "3", "COLLECTOR_EVENT_RESEND_AFTER": "3",
       "COLLECTOR_OUTBOX_SWEEP_AFTER": "1", "COLLECTOR_RPC_TIMEOUT": "5",
       "COLLECTOR_VISIBILITY_TIMEOUT": "20", "COLLECTOR_EVENT_RETRY_BACKOFF_MAX": "5",
       "COLLECTOR_REDRIVE_EVERY": "5",
       # A job an agent took but could not start (its answer lost in the failover) is sent
       # again once its heartbeat is this late.
       "COLLECTOR_JOB_HEARTBEAT_TIMEOUT": "6", "COLLECTOR_AGENT_JOB_HEARTBEAT": "1"}


def _handlers(event: str, sender: str) -> set[str]:
    """The handler tasks subscribed to ``event`` from ``sender`` (every task module loaded)."""
    from tasks import event_bus
    from tasks.app import TASK_MODULES

    for module in TASK_MODULES:
        importlib.import_module(module)
    return {sub.task_name for sub in event_bus.matching(event, sender)}


class Callers:
    """3 threads, each in a loop: push a job to an agent, call an RPC, publish an event."""

    def __init__(self, broker: str, nodes: list[str]) -> None:
        self.broker, self.nodes = broker, nodes
        self.stop = threading.Event()
        self.pushed: list[str] = []  # job ids a caller was given
        self.events: list[str] = []  # event ids published
        self.errors: Counter = Counter()
        self.clients = [Collector(broker, timeout=5, sender=f"hva.caller{k}") for k in range(3)]
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(3)]
        self._lock = threading.Lock()

    def _run(self, k: int) -> None:
        client, n = self.clients[k], 0
        while not self.stop.is_set():
            n += 1
            node = self.nodes[n % len(self.nodes)]
            try:
                job_id = client.call(wire.JOBQUEUE_PROXY, "push_job",
                                     wire.node_queue(wire.STA_HANDLE, node),
                                     wire.StaJob.DELETE_VOLUME, [f"vol-{k}x{n}"])
                with self._lock:
                    self.pushed.append(job_id)
                client.call(wire.JOBQUEUE_PROXY, "find", job_id)
                event_id = client.events.publish(EVENT, [f"i-{k:02d}{n:06d}"])
                with self._lock:
                    self.events.append(event_id)
            except RpcError as exc:  # the failover: typed, and tried again
                with self._lock:
                    self.errors[exc.error_type] += 1
                time.sleep(0.2)
            time.sleep(0.05)

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(20)


def _pings_answer(client: Collector) -> set[str]:
    """The RPC endpoints that answer a ping now."""
    answered = set()
    for endpoint in wire.RPC_ENDPOINTS:
        try:
            client.call(endpoint, wire.PING, timeout=2)
            answered.add(endpoint)
        except RpcError:
            pass
    return answered


def _last_run(broker: str) -> datetime | None:
    """When beat last sent its outbox sweep (redbeat's entry, on the current master)."""
    raw = redis_client(broker).hget(SWEEP_ENTRY, "meta")
    return json.loads(raw, cls=RedBeatJSONDecoder).get("last_run_at") if raw else None


def _runs(count_dir: str, node: str) -> Counter:
    path = os.path.join(count_dir, f"{node}.runs")
    if not os.path.exists(path):
        return Counter()
    with open(path) as runs:
        return Counter(line.strip() for line in runs if line.strip())


def _jobs(db_url: str, nodes: list[str]) -> list[QueuedJob]:
    queues = [wire.node_queue(wire.STA_HANDLE, node) for node in nodes]
    with unit_of_work(db_url) as session:
        return list(session.scalars(select(QueuedJob).where(QueuedJob.queue_name.in_(queues))))


def _unsent(db_url: str) -> int:
    with unit_of_work(db_url) as session:
        return len(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))).all())


def _receipts(db_url: str, event_ids: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {event_id: set() for event_id in event_ids}
    with unit_of_work(db_url) as session:
        for event_id, handler in session.execute(select(EventReceipt.event_id,
                                                        EventReceipt.handler)):
            if event_id in found:
                found[event_id].add(handler)
    return found


@pytest.fixture()
def sentinel_env(monkeypatch):
    with SentinelCluster() as cluster:
        for name, value in {**cluster.env(), **ENV}.items():
            monkeypatch.setenv(name, value)
        yield cluster


def test_the_master_killed_under_load_loses_nothing_and_runs_nothing_twice(
        sentinel_env, postgres_server, tmp_path):
    from collector.db.migrate import upgrade

    cluster = sentinel_env
    db_url = postgres_server.create_database(f"failover_{new_uuid()}")
    upgrade(db_url)
    broker = cluster.url()
    env = {**cluster.env(), **ENV}
    count_dir = str(tmp_path)
    nodes = [f"sta.f{new_uuid()[:6]}{k}" for k in range(2)]
    processes: dict[str, WorkerProcess] = {}
    try:
        # Every role's worker, started together (each waits for its own readiness below).
        for role in ROLES:
            processes[role] = WorkerProcess(db_url, broker, role, ("--concurrency", "2"), env)
        for node in nodes:
            # Each agent as its node: its own key and broker user, made on the master and
            # the replica alike, so it reconnects after the failover.
            processes[node] = WorkerProcess(
                "", broker, role=f"agent-{node}", env=node_env(node, {
                    **env, "COUNT_DIR": count_dir, "COLLECTOR_DATABASE_URL": db_url,
                    "COLLECTOR_BROKER_URL": broker}),
                argv=["-m", "tests.support.counting_agent", node, "2"])
        for process in processes.values():
            process.wait_ready(90)
        processes["beat"] = start_beat(db_url, broker, str(tmp_path / "beat"), env=env)
        pids = {name: process.pid for name, process in processes.items()}
        handlers = _handlers(EVENT, "hva.caller0")
        assert handlers, f"nothing subscribes to {EVENT}"

        with Callers(broker, nodes) as callers:
            time.sleep(KILL_AFTER)
            old_port = cluster.kill_master()
            killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
            cluster.wait_failover(30, old_port=old_port)
            with Collector(broker, timeout=2) as probe:
                wait_for(lambda: _pings_answer(probe) == set(wire.RPC_ENDPOINTS),
                         "every RPC role answering after the failover", RECOVERY)
            recovered = time.monotonic() - killed_at
            time.sleep(max(0.0, LOAD_SECONDS - KILL_AFTER - recovered))
        load_end = time.monotonic()
        for client in callers.clients:
            assert client.events.wait_confirmed(SETTLE), "events not confirmed dispatched"

        # Every job the ledger holds for the agents: finished once, run once at its agent.
        def settled() -> bool:
            jobs = _jobs(db_url, nodes)
            return bool(jobs) and all(j.state == "finished" for j in jobs)

        try:
            wait_for(settled, "every job finished", SETTLE)
        except AssertionError:
            left = [j for j in _jobs(db_url, nodes) if j.state != "finished"]
            raise AssertionError(
                f"{len(left)} jobs not finished: " + "; ".join(
                    f"{j.canonical_uuid} {j.state} worker={j.worker_id} deliveries="
                    f"{j.delivery_count} redeliveries={j.redeliveries} due={j.redeliver_at}"
                    for j in left[:5]) + f"\n{processes[nodes[0]].log_text()[-3000:]}") from None
        jobs = _jobs(db_url, nodes)
        runs = _runs(count_dir, nodes[0]) + _runs(count_dir, nodes[1])
        ledger_ids = {job.canonical_uuid for job in jobs}
        assert set(callers.pushed) <= ledger_ids  # answered: in the ledger
        assert Counter(job.finish_status for job in jobs) == Counter(success=len(jobs))
        lost = ledger_ids - set(runs)
        twice = {job_id: n for job_id, n in runs.items() if n > 1}
        assert not lost, f"{len(lost)} jobs never ran"
        assert not twice, f"jobs run more than once: {twice}"
        assert set(runs) <= ledger_ids

        # Every event handled once by every subscribed handler (receipts are unique).
        def handled() -> dict[str, set[str]]:
            receipts = _receipts(db_url, callers.events)
            return {e: h for e, h in receipts.items() if h != handlers | {"dispatch"}}

        wait_for(lambda: not handled(), "every event's receipts", SETTLE)
        wait_for(lambda: _unsent(db_url) == 0, "every outbox row sent", SETTLE)
        # Beat still schedules: its outbox-sweep entry ran after the failover.
        wait_for(lambda: (_last_run(broker) or killed_wall) > killed_wall,
                 "beat scheduling after the failover", 30)
        for name, process in processes.items():
            code = process.process.poll()
            assert code is None or code != 0, f"{name} exited 0"
            assert code is not None or process.pid == pids[name]
        assert all(process.process.poll() is None for process in processes.values()), \
            {name: p.process.poll() for name, p in processes.items()}
        print(f"failover: every RPC role back {recovered:.1f} s after the kill; "
              f"{len(jobs)} jobs ({sum(j.redeliveries > 0 for j in jobs)} sent again, "
              f"{sum(j.delivery_count > 1 for j in jobs)} taken twice), "
              f"{len(callers.events)} events, caller errors "
              f"{dict(callers.errors)}, settled {time.monotonic() - load_end:.1f} s after "
              "the load")
    finally:
        for process in processes.values():
            process.stop()
