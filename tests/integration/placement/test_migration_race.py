"""Live migrations racing new placements on PostgreSQL: 20 migrations and 20 creates at
once on 5 hosts, in several OS processes (each its own engine).

Migrating processes call ``api.migrate_instance`` (the destination claimed beside the
source) and then do what the destination's agent does: report the switch
(``hva-collector.switch_instance_host_node`` with the job's generation) and finish the job;
every fourth migration fails instead (its job ``finish_fail``). Creating processes place
new instances (``scheduler.schedule_instance``). An observer reads, in one statement (one
snapshot) at a time, every host's counters against the sums of its allocations and its
offering, as long as the race lasts.

Whatever the interleaving: no host ever over its offering, counters equal to allocations
in every snapshot, every migration ending ``running`` on exactly one host (no migration
claim left, one host allocation, on the host the instance is on), the failed ones on their
source with the same generation, the switched ones on another host with the next.
"""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from collector.db import unit_of_work
from collector.errors import InsufficientCapacity
from collector.models import HostAllocation, Instance, MigrationAllocation, QueuedJob
from collector.scheduling import capacity
from tests.support.placement_cluster import run_at_once
from workers.demo.world import make, placement

pytestmark = pytest.mark.integration

HOSTS, SLOTS, MIGRATIONS, CREATES = 5, 9, 20, 20
MIGRATORS, CREATORS = 4, 2
GiB = 1024 ** 3


def _seed(url: str) -> tuple[list[str], list[str]]:
    """20 running instances, 4 per host, and 20 awaiting placement: 40 of 45 slots, so the
    migrations' destination claims run the hosts full."""
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize.slots(SLOTS)] * HOSTS,
                                cidr="10.62.0.0/24", mac_range_end=0xFFFF)
        running = []
        for n in range(MIGRATIONS):
            inst = make.instance(session, world.hosts[n % HOSTS], img=world.image,
                                 hypervisor=world.hypervisor)
            make.volume(session, inst, "local", boot=True, size=GiB)
            running.append(inst.canonical_uuid)
        return running, world.awaiting_placement(session, CREATES)


def _retrying(url: str, work):  # noqa: ANN001, ANN202 - a test helper
    """``work(session)`` in one transaction, again after a deadlock (as the task layer)."""
    for attempt in range(1, 11):
        try:
            with unit_of_work(url) as session:
                return work(session)
        except OperationalError:
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("still failing after 10 tries")


def _migrate(url: str, instance_ids: list[str], start: object, results: object) -> None:
    """Migrate each instance (again while no host has room), then switch or fail it as
    its destination's agent would."""
    from collector.services import host_nodes
    from collector.services.api import instances as api
    from collector.services.jobs import ledger

    start.wait()
    outcomes = []
    for n, instance_id in enumerate(instance_ids):
        for _ in range(200):
            try:
                _retrying(url, lambda s, i=instance_id: api.migrate_instance(s, i))
                break
            except InsufficientCapacity:
                time.sleep(0.02)  # every host full of claims right now: wait for a switch
        else:
            outcomes.append((instance_id, "refused"))
            continue

        def job_of(session, i=instance_id):  # noqa: ANN001, ANN202
            return session.execute(select(QueuedJob.task_id, QueuedJob.queue_name,
                                          QueuedJob.generation)
                                   .where(QueuedJob.resource_id == i,
                                          QueuedJob.job_name == "run_migration",
                                          QueuedJob.state == "pending")).one()

        job_id, queue, generation = _retrying(url, job_of)
        if n % 4 == 3:
            _retrying(url, lambda s, j=job_id: ledger.finish_fail(s, j, {"message": "boom"}))
            outcomes.append((instance_id, "failed"))
            continue
        dest = queue.split(".", 1)[1]
        _retrying(url, lambda s, i=instance_id, d=dest, g=generation:
                  host_nodes.switch_instance_host_node(s, i, d, g))
        _retrying(url, lambda s, j=job_id: ledger.finish_success(s, j))
        outcomes.append((instance_id, "switched"))
    results.put(outcomes)


def _create(url: str, instance_ids: list[str], start: object, results: object) -> None:
    from collector.scheduling import handlers

    start.wait()
    results.put([(i, _retrying(url, lambda s, i=i: handlers.schedule_instance(s, i))["outcome"])
                 for i in instance_ids])


# One statement, so one snapshot: each host's counters, the sums of its allocations (host
# and migration claims) and its offering.
SNAPSHOT = text("""
    SELECT h.id, h.used_cpu_cores, h.used_memory_size, h.used_disk_bytes,
           h.offering_cpu_cores, h.offering_memory_size,
           COALESCE(a.cpu, 0), COALESCE(a.memory, 0), COALESCE(a.disk, 0)
    FROM host_nodes h LEFT JOIN (
        SELECT host_node_id, SUM(cpu_cores) AS cpu, SUM(memory_size) AS memory,
               SUM(disk_bytes) AS disk
        FROM (SELECT host_node_id, cpu_cores, memory_size, disk_bytes FROM host_allocations
              UNION ALL
              SELECT host_node_id, cpu_cores, memory_size, disk_bytes
              FROM migration_allocations) held
        GROUP BY host_node_id) a ON a.host_node_id = h.id""")


def _observe(url: str, start: object, results: object) -> None:
    start.wait()
    snapshots, problems, deadline = 0, [], time.monotonic() + 240
    while time.monotonic() < deadline:
        with unit_of_work(url, readonly=True) as session:
            for row in session.execute(SNAPSHOT):
                used, held = tuple(row[1:4]), tuple(row[6:9])
                if used != held or row[1] > row[4] or row[2] > row[5]:
                    problems.append(tuple(row))
            busy = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.state.in_(("scheduling", "migrating"))))
            settled = session.scalar(select(func.count()).select_from(QueuedJob).where(
                QueuedJob.job_name == "run_migration", QueuedJob.state == "finished"))
        snapshots += 1
        if busy == 0 and settled and snapshots > 20:
            break
    results.put(("observer", snapshots, problems))


def test_migrations_and_creates_at_once_never_over_commit(race_db):
    running, creates = _seed(race_db)
    with unit_of_work(race_db, readonly=True) as session:
        before = {i.canonical_uuid: (i.host_node_id, i.placement_generation)
                  for i in session.scalars(select(Instance).where(Instance.state == "running"))}
    collected = run_at_once(
        [(_observe, race_db)]
        + [(_migrate, race_db, running[n::MIGRATORS]) for n in range(MIGRATORS)]
        + [(_create, race_db, creates[n::CREATORS]) for n in range(CREATORS)])
    [(_, snapshots, problems)] = [c for c in collected if c and c[0] == "observer"]
    outcomes = dict(o for c in collected if c and c[0] != "observer" for o in c)
    print(f"{snapshots} snapshots; outcomes: "
          f"{sorted((v, sum(1 for x in outcomes.values() if x == v)) for v in set(outcomes.values()))}")
    assert problems == [], problems[:5]
    assert len(outcomes) == MIGRATIONS + CREATES
    assert [outcomes[i] for i in creates].count("placed") + \
        [outcomes[i] for i in creates].count("failed") == CREATES
    assert "switched" in outcomes.values() and "failed" in outcomes.values()
    with unit_of_work(race_db, readonly=True) as session:
        assert capacity.reconcile(session) == []
        assert session.scalar(select(func.count()).select_from(MigrationAllocation)) == 0
        for instance_id in running:
            inst = Instance.by_cuuid(session, instance_id)
            claims = session.scalars(select(HostAllocation.host_node_id)
                                     .where(HostAllocation.instance_id == inst.id)).all()
            assert inst.state == "running" and claims == [inst.host_node_id], instance_id
            source, generation = before[instance_id]
            if outcomes[instance_id] == "switched":
                assert inst.host_node_id != source and inst.placement_generation == \
                    generation + 1, instance_id
            else:
                assert (inst.host_node_id, inst.placement_generation) == (source, generation)
        for instance_id in creates:
            inst = Instance.by_cuuid(session, instance_id)
            claims = session.scalars(select(HostAllocation.host_node_id)
                                     .where(HostAllocation.instance_id == inst.id)).all()
            assert claims == ([inst.host_node_id] if outcomes[instance_id] == "placed" else [])
