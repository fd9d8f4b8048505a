"""Placement under contention on PostgreSQL: 200 instances, hosts with room for exactly 150.

Several OS processes (each with its own engine) place at once, first calling the handler
directly (one placement per transaction, then batches of ``schedule_instances``), then as
4 real ``collector worker --role scheduler`` processes (each job sent twice, so duplicates
race their originals too). Whatever the interleaving: exactly 150 placed, 50 failed with
InsufficientCapacity and terminated, no host over its offering, no IP or MAC address given
twice, counters equal to allocations. Batches may deadlock on host rows when hosts run
full (PostgreSQL aborts one; it is retried whole, as the task layer retries in place).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from collector.db import outbox, unit_of_work
from collector.models import (
    HostNode,
    Instance,
    IpLease,
    MacLease,
    NetworkVif,
    NetworkVifIpLease,
    OutboxMessage,
    QueuedJob,
)
from collector.scheduling import capacity
from tasks import relay
from tests.support.checks import wait_for
from tests.support.placement_cluster import run_at_once
from tests.support.rpc import signed_celery
from tests.support.servers import start_worker
from workers.demo.world import placement

pytestmark = pytest.mark.integration

HOSTS, SLOTS_PER_HOST, INSTANCES, PROCESSES = 10, 15, 200, 4


def _seed(url: str) -> list[str]:
    """Hosts whose cpu AND memory each fit exactly 15 instances; 200 instances to place."""
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize.slots(SLOTS_PER_HOST)] * HOSTS,
                                cidr="10.60.0.0/22", mac_range_end=0xFFFF)
        return world.awaiting_placement(session, INSTANCES)


def _place_all(url: str, batch_size: int, instance_ids: list[str], start: object,
               results: object) -> None:
    """One scheduler process: its own engine, one transaction per job, or per batch of
    ``batch_size`` (``schedule_instances``); retried after a short random pause on a
    transient database error (two batches may deadlock on each other's hosts), as
    the task layer does."""
    from collector.scheduling import batch, handlers

    start.wait()
    outcomes, retries = [], 0
    for n in range(0, len(instance_ids), batch_size):
        chunk = instance_ids[n:n + batch_size]
        answers, tries = retried(url, lambda session, chunk=chunk: [
            handlers.schedule_instance(session, chunk[0])] if batch_size == 1
            else batch.schedule_instances(session, chunk))
        retries += tries
        outcomes.extend((r["instance_id"], r["outcome"], r.get("error_type")) for r in answers)
    results.put((outcomes, retries))


def retried(url: str, place: Callable[[Session], Any]) -> tuple[Any, int]:
    """``place(session)`` in one transaction, again after a short random pause when it
    meets a transient database error (two batches deadlocked on each other's hosts), as
    the task layer does: its answer and the retries."""
    for attempt in range(1, 11):
        try:
            with unit_of_work(url) as session:
                return place(session), attempt - 1
        except OperationalError:
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("a placement still failed after 10 tries")


def _check_world(url: str) -> dict[str, int]:
    with unit_of_work(url) as session:
        states = dict(session.execute(select(Instance.state, func.count())
                                      .group_by(Instance.state)).all())
        errors = dict(session.execute(select(Instance.placement_error, func.count())
                                      .where(Instance.state == "terminated")
                                      .group_by(Instance.placement_error)).all())
        assert states == {"pending": 150, "terminated": 50}, states
        assert all(e.startswith("InsufficientCapacity: ") for e in errors), errors
        for host in session.scalars(select(HostNode)):
            placed = session.execute(select(func.count(), func.coalesce(func.sum(
                Instance.memory_size), 0)).where(Instance.host_node_id == host.id,
                                                 Instance.terminated_at.is_(None))).one()
            assert placed[0] <= host.offering_cpu_cores, host.canonical_uuid
            assert placed[1] <= host.offering_memory_size, host.canonical_uuid
            assert host.used_cpu_cores <= host.offering_cpu_cores
        assert capacity.reconcile(session) == []
        alive_vifs = session.scalars(select(NetworkVif.mac_addr).where(
            NetworkVif.deleted_at.is_(None))).all()
        assert len(alive_vifs) == 150 == len(set(alive_vifs))
        assert session.scalar(select(func.count()).select_from(MacLease)) == 150
        leases = session.execute(select(NetworkVifIpLease.network_id, NetworkVifIpLease.ipv4)
                                 .where(NetworkVifIpLease.deleted_at.is_(None))).all()
        assert len(leases) == 150 == len(set(leases))
        assert session.scalar(select(func.count()).select_from(IpLease)) == 150
    return states


@pytest.mark.parametrize("batch_size", [1, 16], ids=["one_per_transaction", "batches"])
def test_concurrent_processes_never_over_commit(race_db, batch_size):
    ids = _seed(race_db)
    collected = run_at_once([(_place_all, race_db, batch_size, ids[n::PROCESSES])
                             for n in range(PROCESSES)])
    outcomes = [o for chunk, _ in collected for o in chunk]
    print(f"transient database errors retried: {sum(r for _, r in collected)}")
    assert len(outcomes) == INSTANCES
    by_outcome = {}
    for _, outcome, error_type in outcomes:
        by_outcome[(outcome, error_type)] = by_outcome.get((outcome, error_type), 0) + 1
    assert by_outcome == {("placed", None): 150, ("failed", "InsufficientCapacity"): 50}
    _check_world(race_db)


def _finished_jobs(workers: list) -> list[str]:
    """Each finished scheduler.schedule_instance job in the worker logs: its outcome, or
    the error it raised."""
    out = []
    for worker in workers:
        for line in worker.log_text().splitlines():
            if "scheduler.schedule_instance[" not in line:
                continue
            if " succeeded in " in line:
                out.append(line.split("'outcome': '", 1)[1].split("'", 1)[0])
            elif " raised " in line:
                out.append(line.split(" raised ", 1)[1].split(": ", 1)[1].split("(", 1)[0])
    return out


def _start_schedulers(workers: list, url: str, broker: str, log_dir: str) -> None:
    """``PROCESSES`` scheduler worker processes of one thread each, added to ``workers`` as
    each starts (the caller stops them all, however far this got)."""
    for _ in range(PROCESSES):
        workers.append(start_worker(url, broker, role="scheduler",
                                    extra_args=("--concurrency", "1"), log_dir=log_dir))


def test_four_scheduler_workers_never_over_commit(race_db, redis_server, tmp_path):
    ids = _seed(race_db)
    broker = f"{redis_server.url}/12"
    redis.Redis.from_url(broker).flushdb()
    workers = []
    try:
        _start_schedulers(workers, race_db, broker, str(tmp_path))
        client = signed_celery(broker)
        for instance_id in ids * 2:  # every job twice: a duplicate must change nothing
            client.send_task("scheduler.schedule_instance", args=[instance_id],
                             queue="scheduler")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = _finished_jobs(workers)
            if len(done) >= 2 * INSTANCES:
                break
            time.sleep(0.5)
        counts = {kind: sum(1 for d in done if d == kind) for kind in set(done)}
        assert counts == {"placed": 150, "noop": 200, "InsufficientCapacity": 50}, counts
        _check_world(race_db)
    finally:
        for worker in workers:
            worker.stop()


def test_four_scheduler_workers_batch_ledger_jobs_and_finish_each_with_its_outcome(
        race_db, redis_server, tmp_path):
    """The API's way: each request a ``schedule_instance`` job of the ledger. A worker's job
    takes the waiting ones along (``own_jobs``), so 4 workers place in batches while every
    job is also sent a second time: still exactly 150 placed, and every job finished in
    the transaction of its instance's outcome."""
    ids = _seed(race_db)
    broker = f"{redis_server.url}/13"
    redis.Redis.from_url(broker).flushdb()
    with unit_of_work(race_db) as session:
        jobs = {i: outbox.jobs.submit(session, "scheduler", "schedule_instance", i, resource_id=i)
                for i in ids}
        rows = list(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.task_id.in_(jobs.values()))))
    workers = []
    try:
        _start_schedulers(workers, race_db, broker, str(tmp_path))
        # What the workers' own outbox sweep has not sent yet.
        relay.publish_rows(relay.publisher(broker), rows, db_url=race_db)
        client = signed_celery(broker)
        for instance_id, job_id in jobs.items():  # a second copy of every job
            client.send_task("scheduler.schedule_instance", args=[instance_id],
                             queue="scheduler", task_id=job_id)

        def finished() -> list[QueuedJob] | None:
            with unit_of_work(race_db) as session:
                done = list(session.scalars(select(QueuedJob).where(
                    QueuedJob.task_id.in_(jobs.values()), QueuedJob.state == "finished")))
                return done if len(done) == INSTANCES else None

        done = wait_for(finished, "every job finished", 300, every=0.5)
        _check_world(race_db)
        with unit_of_work(race_db) as session:
            states = {f"i-{uuid}": state for uuid, state in session.execute(
                select(Instance.uuid, Instance.state))}
        for job in done:  # the ledger says what was committed for its instance
            assert (job.finish_status, states[job.resource_id]) in {
                ("success", "pending"), ("fail", "terminated")}, job.resource_id
            if job.finish_status == "fail":
                assert job.finish_message["error_type"] == "InsufficientCapacity"
        # Placed in batches: several jobs ended in one transaction (one timestamp).
        assert len({job.finished_at for job in done}) < INSTANCES / 2
        # A job's result is its outcome, or the noop answer of a job already finished: a
        # message whose job a batch of its worker took along is answered at receipt
        # (``tasks.taken_along``), without a task run for it.
        results = signed_celery(broker, backend=broker)
        for job in done:
            try:
                answer = results.AsyncResult(job.task_id).get(timeout=30)
            except Exception as exc:  # noqa: BLE001 - a refused placement's typed error
                assert type(exc).__name__ == "InsufficientCapacity", job.task_id
                continue
            assert answer["outcome"] in {"placed", "noop"}, answer
            if "finish_status" in answer:  # else a copy that found its instance placed
                assert answer["finish_status"] == job.finish_status, answer
        ran = sum(worker.log_text().count("] received") for worker in workers)
        assert ran < 2 * INSTANCES, "every message ran a task: none answered at receipt"
    finally:
        for worker in workers:
            worker.stop()


# --- allocation ratios under contention ---------------------------------------------------------

# Four hosts of 4 cores: two with a cpu ratio of their own, two on the configured default (1.5);
# memory at the configured 3.0 never binds. Room for 8 + 10 + 6 + 6 = 30 one-core instances.
RATIO_HOSTS = ((2000, None), (2500, None), (None, None), (None, None))  # (cpu, ram) milli
RATIO_SLOTS, RATIO_INSTANCES = 30, 45


def _seed_ratios(url: str) -> list[str]:
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize(4, 4096, 64 * 1024)] * 4,
                                cidr="10.61.0.0/24", mac_range_end=0xFFFF)
        for host, (cpu, ram) in zip(world.hosts, RATIO_HOSTS, strict=True):
            host.cpu_allocation_ratio_milli, host.ram_allocation_ratio_milli = cpu, ram
        return world.awaiting_placement(session, RATIO_INSTANCES)


@pytest.mark.parametrize("batch_size", [1, 8], ids=["one_per_transaction", "batches"])
def test_concurrent_processes_never_exceed_physical_times_ratio(race_db, batch_size, tmp_path,
                                                               monkeypatch):
    conf = tmp_path / "scheduler.toml"
    conf.write_text("cpu_allocation_ratio = 1.5\nram_allocation_ratio = 3.0\n")
    monkeypatch.setenv("COLLECTOR_SCHEDULER_CONFIG", str(conf))  # the spawned processes' own
    ids = _seed_ratios(race_db)
    collected = run_at_once([(_place_all, race_db, batch_size, ids[n::PROCESSES])
                             for n in range(PROCESSES)])
    by_outcome: dict[tuple[str, str | None], int] = {}
    for chunk, _ in collected:
        for _, outcome, error_type in chunk:
            by_outcome[(outcome, error_type)] = by_outcome.get((outcome, error_type), 0) + 1
    assert by_outcome == {("placed", None): RATIO_SLOTS,
                          ("failed", "InsufficientCapacity"): RATIO_INSTANCES - RATIO_SLOTS}
    with unit_of_work(race_db) as session:
        offered = {8, 10, 6}
        for host in session.scalars(select(HostNode).order_by(HostNode.id)):
            alive = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.host_node_id == host.id, Instance.terminated_at.is_(None)))
            milli = host.cpu_allocation_ratio_milli or 1500
            assert host.used_cpu_cores == alive == 4 * milli // 1000, host.canonical_uuid
            assert host.used_cpu_cores in offered
        assert capacity.reconcile(session) == []
        errors = session.scalars(select(Instance.placement_error)
                                 .where(Instance.state == "terminated")).all()
        assert len(errors) == RATIO_INSTANCES - RATIO_SLOTS
        assert all(e.startswith("InsufficientCapacity: 0/4 hosts available for i-")
                   and e.endswith(": 4 short of cpu") for e in errors), errors
