"""Placement converges after a database outage: every request ends placed or refused.

PostgreSQL is stopped for 5 s while 50 ``api.create_instance`` requests are being placed by
two scheduler worker processes (``--role scheduler``), with a reference agent on each of
three hosts booting what is placed, one worker for every other queue, and beat. The hosts
have room for 48 of the 50 (16 one-core instances each). Within 90 s of the database's
return every instance has left ``scheduling``: running, booted exactly once on its host, or
terminated with a typed reason (``OutOfHostCapacity: ...``); the capacity counters equal
the allocations and no host holds more than it offers; no ledger job is left non-final,
and a boot job is ``success`` only for an instance that runs. The outage comes after the
first 3 placements (``while-placing``: the placements, their callbacks and the first boots
meet it), or after 25 (``while-booting``: boots half done meet it).

The outage is ``pg_ctl stop -m fast`` then ``start`` (``PostgresServer.pause``/``resume``),
not SIGSTOP of the postmaster: the finding is the database *unavailable*. A fast stop cuts
every session (transactions in flight roll back, a COMMIT may be cut, pooled connections
die) and refuses new ones at once, which is what the retries, the in-place reruns and the
outcome-unknown path must survive. A SIGSTOPped postmaster only freezes: running sessions
(its children) carry on, new connections hang in the listen queue and succeed once it is
continued, so it models a slow database, not a lost one, and exercises none of these paths.

Mechanisms this relies on, each with its own deterministic test: scheduler jobs retried
with backoff (``tests/unit/tasks/test_transient_retries.py``), ledger callbacks retried,
and finished from the result backend when lost (``test_reconcile.py``,
``tests/integration/delivery/test_job_outcomes_truthful.py``), requests re-driven
(``test_redrive.py``, ``test_redrive_race.py``), agents' handlers retried and duplicate
copies dropped (``tests/unit/workers/test_agent_job_retries.py``).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from collector import wire
from collector.db import dispose_engines, session_factory, unit_of_work
from collector.models import HostAllocation, HostNode, Instance, QueuedJob
from collector.scheduling import capacity
from tests.support.checks import wait_for
from tests.support.placement_cluster import placement_cluster
from tests.support.servers import PostgresServer
from workers.agent.client import Collector, RpcError
from workers.demo.world import placement

pytestmark = pytest.mark.integration

REDIS_DB = 7
REQUESTS, HOSTS, CORES = 50, 3, 16  # room for 48
OUTAGE_SEC, CONVERGE_SEC = 5.0, 90.0
# When PostgreSQL stops: after this many placements (the rest under way), or this many (the
# first boots under way too).
WHILE_PLACING, WHILE_BOOTING = 3, 25
# Short periods so that a pass meets the outage's leftovers well within the 90 s.
ENV = {"COLLECTOR_REDRIVE_AFTER": "5", "COLLECTOR_REDRIVE_EVERY": "2"}
UNSETTLED = ("scheduling", "pending", "initializing")
NON_FINAL_JOBS = ("pending", "running", "held")
BOOTS = (wire.LocalStoreJob.RUN_LOCAL_STORE, wire.HvaJob.RUN_VOL_STORE)
TYPED_REASON = re.compile(r"^[A-Z][A-Za-z]+: \S")


@pytest.fixture()
def cluster(redis_server, tmp_path_factory):
    pg = PostgresServer().start()  # its own server: this test stops it
    try:
        with placement_cluster(
                pg.create_database("outage"), f"{redis_server.url}/{REDIS_DB}", HOSTS,
                node_prefix="o", cidr="10.77.0.0/24", env=ENV,
                host_size=placement.HostSize(CORES, CORES * 2048, 400 * 1024),
                scheduler_workers=2, beat_dir=str(tmp_path_factory.mktemp("beat"))) as c:
            yield {**c, "pg": pg}
    finally:
        dispose_engines()
        pg.stop()


def create_all(c: dict[str, Any]) -> tuple[list[str], int]:
    """The 50 creates, from 5 clients at once: the ids the API answered, and how many it
    refused at once for want of room (placements running meanwhile may fill the hosts)."""
    request = {"image_id": c["image"], "hypervisor": "kvm", "cpu_cores": 1,
               "memory_size": 1024, "vifs": {"eth0": {"network": c["network"]}}}

    def create(client: Collector) -> str | None:
        try:
            return client.rpc(wire.API).create_instance(request)["id"]
        except RpcError as exc:
            if exc.error_type != "OutOfHostCapacity":
                raise
            return None

    def ten(_n: int) -> list[str | None]:
        with Collector(c["broker"], timeout=60) as client:
            return [create(client) for _ in range(10)]

    with ThreadPoolExecutor(5) as pool:
        answers = [i for ids in pool.map(ten, range(REQUESTS // 10)) for i in ids]
    return [i for i in answers if i], answers.count(None)


def hold_placements(c: dict[str, Any]) -> list[str]:
    """The scheduler workers stop taking placement jobs (Celery's ``cancel_consumer``); their
    node names, to let them go again (``add_consumer``)."""
    control = c["client"].app.control
    active = control.inspect(timeout=5).active_queues() or {}
    names = sorted(n for n, queues in active.items()
                   if any(q["name"] == wire.SCHEDULER for q in queues))
    assert len(names) == 2, active
    control.cancel_consumer(wire.SCHEDULER, destination=names, reply=True, timeout=5)
    return names


def instance_states(db_url: str) -> dict[str, tuple[str, str | None, str | None]]:
    with unit_of_work(db_url, readonly=True) as session:
        return {i.canonical_uuid: (i.state, i.placement_error,
                                   i.host_node.node_id if i.host_node else None)
                for i in session.scalars(select(Instance))}


def open_jobs(db_url: str) -> int:
    with unit_of_work(db_url, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(QueuedJob).where(
            QueuedJob.state.in_(NON_FINAL_JOBS)))


def unsettled_jobs(c: dict[str, Any]) -> dict[str, list[tuple]]:
    """What the ledger and the agents say of each instance not settled (a failure's why)."""
    stuck = [i for i, (s, _e, _h) in instance_states(c["db_url"]).items() if s in UNSETTLED]
    with unit_of_work(c["db_url"], readonly=True) as session:
        jobs = {i: [(j.job_name, j.state, j.finish_status, j.finish_message, j.generation,
                     j.delivery_count) for j in session.scalars(
            select(QueuedJob).where(QueuedJob.resource_id == i).order_by(QueuedJob.id))]
            for i in stuck}
    for node in c["hosts"].values():
        for raw in c["redis"].lrange(f"agent-log:{node}", 0, -1):
            entry = json.loads(raw)
            if any(i in raw.decode() for i in stuck):
                jobs.setdefault("agent-log", []).append((node, entry.get("phase"),
                                                         entry.get("name"),
                                                         entry.get("result")))
    return jobs


def settled(db_url: str, created: int) -> bool:
    states = instance_states(db_url)
    return len(states) == created and \
        all(s not in UNSETTLED for s, _e, _h in states.values()) and open_jobs(db_url) == 0


def boots_by_agents(c: dict[str, Any]) -> dict[str, list[str]]:
    """instance id -> the nodes whose agent booted it (a ``finished`` boot record)."""
    booted: dict[str, list[str]] = {}
    for node in c["hosts"].values():
        for raw in c["redis"].lrange(f"agent-log:{node}", 0, -1):
            entry = json.loads(raw)
            done = (entry.get("result") or {}).get("booted")
            if entry["phase"] == "finished" and entry["name"] in BOOTS and done:
                booted.setdefault(done, []).append(node)
    return booted


@pytest.mark.parametrize("placed_before", [
    pytest.param(WHILE_PLACING, id="while-placing"),
    pytest.param(WHILE_BOOTING, id="while-booting"),
])
def test_every_request_leaves_scheduling_after_postgresql_was_down(cluster, placed_before):
    c, pg = cluster, cluster["pg"]
    # Placing 50 takes about as long as asking for them: hold the placements back until all
    # are asked for, so that the outage lands while they are being placed.
    schedulers = hold_placements(c)
    ids, refused_at_once = create_all(c)
    assert len(set(ids)) + refused_at_once == REQUESTS
    c["client"].app.control.add_consumer(wire.SCHEDULER, destination=schedulers, reply=True,
                                         timeout=5)
    wait_for(lambda: sum(1 for s, _e, _h in instance_states(c["db_url"]).values()
                         if s != "scheduling") >= placed_before,
             "the first placements", timeout=30, every=0.05)
    waiting = sum(1 for s, _e, _h in instance_states(c["db_url"]).values() if s == "scheduling")
    pg.pause()  # while the placements (and the first boots) run
    down_at = time.monotonic()
    time.sleep(OUTAGE_SEC)
    pg.resume()
    back_at = time.monotonic()
    dispose_engines()  # this process's pooled connections died with the server

    deadline = back_at + CONVERGE_SEC
    while not settled(c["db_url"], len(ids)):
        assert time.monotonic() < deadline, (
            f"not settled {CONVERGE_SEC:g}s after the outage: "
            f"{[v for v in instance_states(c['db_url']).items() if v[1][0] in UNSETTLED]}; "
            f"{open_jobs(c['db_url'])} ledger jobs open; their jobs: {unsettled_jobs(c)}")
        time.sleep(1)
    took = time.monotonic() - back_at

    states = instance_states(c["db_url"])
    running = {i: host for i, (s, _e, host) in states.items() if s == "running"}
    refused = {i: reason for i, (s, reason, _h) in states.items() if s != "running"}
    assert all(states[i][0] == "terminated" and reason and TYPED_REASON.match(reason)
               for i, reason in refused.items()), refused
    assert len(running) == HOSTS * CORES
    assert len(refused) + refused_at_once == REQUESTS - HOSTS * CORES

    # Each running instance was booted once, by its own host's agent.
    booted = boots_by_agents(c)
    assert {i: booted.get(i) for i in running} == {i: [host] for i, host in running.items()}
    assert not set(booted) - set(running)

    with unit_of_work(c["db_url"], readonly=True) as session:
        jobs = list(session.scalars(select(QueuedJob)))
        hosts = list(session.scalars(select(HostNode)))
        allocations = session.scalar(select(func.count()).select_from(HostAllocation))
    assert all(j.state == "finished" for j in jobs)
    # The ledger says success only for work done: a successful boot is a running instance.
    assert all(j.resource_id in running for j in jobs
               if j.job_name in BOOTS and j.finish_status == "success")
    assert {j.resource_id for j in jobs if j.job_name in BOOTS and
            j.finish_status == "success"} == set(running)
    assert allocations == len(running)
    assert all(h.used_cpu_cores <= h.offering_cpu_cores and
               h.used_memory_size <= h.offering_memory_size for h in hosts)
    check = session_factory(c["db_url"])()
    try:
        check.begin()
        assert capacity.reconcile(check) == []  # counters equal the allocations
    finally:
        check.rollback()
        check.close()

    placements = [j for j in jobs if j.queue_name == wire.SCHEDULER]
    print(f"\nPostgreSQL down {back_at - down_at:.1f}s (stop to start) with {waiting} of "
          f"{len(ids)} created still scheduling when it stopped; settled {took:.1f}s after it came "
          f"back: {len(running)} running, {len(refused)} refused; "
          f"{len(placements)} placement jobs "
          f"({sum(1 for j in placements if j.finish_status == 'fail')} failed), "
          f"{len(jobs)} ledger jobs")
