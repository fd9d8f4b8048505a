"""The re-drive pass run by several processes at once on PostgreSQL: each stuck request is
placed again, or refused, exactly once (``collector.scheduling.redrive``).

Stuck: new instances, starts and standalone volumes left ``scheduling`` whose placement job
finished failed; some have failed too often and are refused. Four OS processes (each with
its own engine) run the pass together, in rounds; a placement job holding one request's row
lock meanwhile (as a running placement does) keeps every pass off that request until it
commits.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from collector import wire
from collector.db import db_now, outbox, unit_of_work
from collector.models import Instance, OutboxMessage, QueuedJob
from collector.scheduling import redrive
from tests.support.placement_cluster import run_at_once
from workers.demo.world import make, placement

pytestmark = pytest.mark.integration

PROCESSES, ROUNDS, MAX_JOBS = 4, 3, 3
NEW, STARTS, VOLUMES, REFUSED = 12, 6, 6, 4  # REFUSED of the NEW have failed MAX_JOBS times


def _failed_job(session, resource_id: str, name: str) -> None:
    job_id = outbox.jobs.submit(session, wire.SCHEDULER, name, resource_id,
                                resource_id=resource_id)
    job = QueuedJob.by_cuuid(session, job_id)
    job.state, job.finish_status = "finished", "fail"
    job.finished_at = db_now(session) - timedelta(minutes=5)
    job.finish_message = {"error_type": "TransientError", "message": "database down"}


def _seed(url: str) -> dict[str, list[str]]:
    """Requests whose placement job failed: new instances (the first REFUSED of them
    MAX_JOBS times), starts and volumes; their ids by kind."""
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize.slots(8)] * 2, storage=True,
                                cidr="10.61.0.0/24", mac_vendor=placement.random_local_mac_vendor())
        new = world.awaiting_placement(session, NEW)
        starts = []
        for _ in range(STARTS):
            inst = make.instance(session, img=world.image, state="scheduling", status="offline")
            make.volume(session, inst, kind=None, state="available", boot=True)
            starts.append(inst.canonical_uuid)
        volumes = [make.volume(session, None, kind=None, state="scheduling").canonical_uuid
                   for _ in range(VOLUMES)]
        session.flush()
        for n, inst_id in enumerate(new):
            for _ in range(MAX_JOBS if n < REFUSED else 1):
                _failed_job(session, inst_id, wire.SchedulerJob.SCHEDULE_INSTANCE)
        for inst_id in starts:
            _failed_job(session, inst_id, wire.SchedulerJob.SCHEDULE_START_INSTANCE)
        for vol_id in volumes:
            _failed_job(session, vol_id, wire.SchedulerJob.SCHEDULE_VOLUME)
    return {"new": new, "starts": starts, "volumes": volumes}


def _pass(url: str, start: object, results: object) -> None:
    """One maintenance pass in its own process, once ``start`` is set."""
    start.wait()
    with unit_of_work(url) as session:
        results.put(redrive.redrive(session, 0, MAX_JOBS))


def _pending_jobs(url: str) -> dict[str, int]:
    with unit_of_work(url, readonly=True) as session:
        return dict(session.execute(
            select(QueuedJob.resource_id, func.count()).where(QueuedJob.state == "pending")
            .group_by(QueuedJob.resource_id)).all())


def test_concurrent_passes_place_each_stuck_request_again_exactly_once(race_db):
    seeded = _seed(race_db)
    refused = set(seeded["new"][:REFUSED])
    redriven = set(seeded["new"][REFUSED:]) | set(seeded["starts"]) | set(seeded["volumes"])
    seen = {"redriven": [], "refused": []}
    for _ in range(ROUNDS):  # later rounds find every job alive, or nothing left waiting
        for answer in run_at_once([(_pass, race_db)] * PROCESSES):
            for key in seen:
                seen[key] += answer[key]
    assert sorted(seen["redriven"]) == sorted(redriven)  # each once, whichever pass did it
    assert sorted(seen["refused"]) == sorted(refused)
    assert _pending_jobs(race_db) == dict.fromkeys(redriven, 1)
    with unit_of_work(race_db, readonly=True) as session:
        kinds = dict(session.execute(select(QueuedJob.resource_id, QueuedJob.job_name).where(
            QueuedJob.state == "pending")).all())
        assert {kinds[i] for i in seeded["starts"]} == {wire.SchedulerJob.SCHEDULE_START_INSTANCE}
        assert {kinds[i] for i in seeded["volumes"]} == {wire.SchedulerJob.SCHEDULE_VOLUME}
        assert {kinds[i] for i in redriven & set(seeded["new"])} == \
            {wire.SchedulerJob.SCHEDULE_INSTANCE}
        states = dict(session.execute(select(Instance.state, func.count()).where(
            Instance.uuid.in_([i.split("-", 1)[1] for i in refused])).group_by(
            Instance.state)).all())
        assert states == {"terminated": REFUSED}
        # A message per ledger job: the seeded ones, and one per request placed again.
        unsent = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.queue == wire.SCHEDULER, OutboxMessage.sent_at.is_(None)))
        assert unsent == len(redriven) + sum(
            MAX_JOBS if i in refused else 1 for i in seeded["new"]) + STARTS + VOLUMES


def test_a_request_being_placed_is_skipped_by_every_pass(race_db):
    with unit_of_work(race_db) as session:
        world = placement.build(session, [placement.HostSize.slots(4)], cidr="10.62.0.0/24",
                                mac_vendor=placement.random_local_mac_vendor())
        [inst_id] = world.awaiting_placement(session, 1)
        _failed_job(session, inst_id, wire.SchedulerJob.SCHEDULE_INSTANCE)
    locked, release = threading.Event(), threading.Event()

    def placement_in_progress() -> None:  # holds the row lock as schedule_instance does
        with unit_of_work(race_db) as session:
            session.execute(text("SELECT id FROM instances WHERE uuid = :u FOR UPDATE"),
                            {"u": inst_id.split("-", 1)[1]})
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=placement_in_progress)
    holder.start()
    try:
        assert locked.wait(30)
        answers = run_at_once([(_pass, race_db)] * 2)
        assert all(inst_id not in a["redriven"] for a in answers)  # skipped, not waited for
    finally:
        release.set()
        holder.join(30)
    answers = run_at_once([(_pass, race_db)] * 2)
    assert sorted(i for a in answers for i in a["redriven"]) == [inst_id]
    assert _pending_jobs(race_db)[inst_id] == 1
    with unit_of_work(race_db, readonly=True) as session:
        assert session.scalar(select(Instance.state).where(
            Instance.uuid == inst_id.split("-", 1)[1])) == "scheduling"
