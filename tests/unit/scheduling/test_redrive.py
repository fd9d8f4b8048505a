"""Placement requests left ``scheduling`` with no live placement job: placed again once, or
refused with a typed reason after too many tries (``collector.scheduling.redrive``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from collector import wire
from collector.db import db_now, outbox
from collector.models import Instance, QueuedJob, Volume
from collector.scheduling import handlers, redrive
from collector.timeutil import utcnow
from tests.support.scheduling import GB, counters_true, scheduling_instance
from workers.demo.world import make

MAX_JOBS = 3


def placement_job(session, row: Instance | Volume, name: str, state: str = "finished",
                  status: str | None = "fail", ago: float = 3600,
                  message: dict[str, Any] | None = None) -> QueuedJob:
    """A placement job of ``row`` in the ledger, in ``state`` (finished ``ago`` s ago)."""
    job_id = outbox.jobs.submit(session, wire.SCHEDULER, name, row.canonical_uuid,
                                resource_id=row.canonical_uuid)
    job = QueuedJob.by_cuuid(session, job_id)
    job.state = state
    if state == "finished":
        job.finish_status = status
        job.finished_at = db_now(session) - timedelta(seconds=ago)
        job.finish_message = message or {"error_type": "TransientError",
                                         "message": "the database cannot serve the call now"}
    session.flush()
    return job


def jobs_of(session, row: Instance | Volume) -> list[tuple[str, str]]:
    return [(j.job_name, j.state) for j in session.scalars(
        select(QueuedJob).where(QueuedJob.resource_id == row.canonical_uuid)
        .order_by(QueuedJob.id))]


def run(session, after: float = 0) -> dict[str, list[str]]:
    return redrive.redrive(session, after, MAX_JOBS)


def waiting_volume(session, world) -> Volume:
    vol = make.volume(session, None, kind=None, state="scheduling", size=5 * GB)
    session.flush()
    return vol


def stopped_then_started(session, world) -> Instance:
    """What ``api.start_instance`` leaves: a stopped instance back in ``scheduling``, its
    volumes on disk."""
    inst = make.instance(session, img=world.local_image, state="scheduling", status="offline",
                         hypervisor=world.hv, request_params={"vifs": {}})
    make.volume(session, inst, kind=None, state="available", size=GB, boot=True)
    session.flush()
    return inst


def test_a_request_whose_placement_job_failed_is_submitted_again_once(session, world):
    inst = scheduling_instance(session, world)
    placement_job(session, inst, wire.SchedulerJob.SCHEDULE_INSTANCE)
    assert run(session) == {"redriven": [inst.canonical_uuid], "refused": []}
    assert jobs_of(session, inst) == [(wire.SchedulerJob.SCHEDULE_INSTANCE, "finished"),
                                      (wire.SchedulerJob.SCHEDULE_INSTANCE, "pending")]
    # The new job is alive: a second pass leaves the request to it.
    assert run(session) == {"redriven": [], "refused": []}
    assert len(jobs_of(session, inst)) == 2
    # And that job places it.
    assert handlers.schedule_instance(session, inst.canonical_uuid)["outcome"] == "placed"
    assert counters_true(session)


def test_a_stuck_volume_and_a_stuck_start_get_their_own_jobs_again(session, world):
    vol = waiting_volume(session, world)
    placement_job(session, vol, wire.SchedulerJob.SCHEDULE_VOLUME)
    start = stopped_then_started(session, world)
    placement_job(session, start, wire.SchedulerJob.SCHEDULE_START_INSTANCE)
    assert sorted(run(session)["redriven"]) == sorted([vol.canonical_uuid,
                                                       start.canonical_uuid])
    assert jobs_of(session, vol)[-1] == (wire.SchedulerJob.SCHEDULE_VOLUME, "pending")
    assert jobs_of(session, start)[-1] == (wire.SchedulerJob.SCHEDULE_START_INSTANCE, "pending")
    message = session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == vol.canonical_uuid, QueuedJob.state == "pending")).one()
    assert message.params == {"args": [vol.canonical_uuid]}


@pytest.mark.parametrize("state", ["pending", "running", "held"])
def test_a_request_whose_placement_job_is_alive_is_left_to_it(session, world, state):
    inst = scheduling_instance(session, world)
    placement_job(session, inst, wire.SchedulerJob.SCHEDULE_INSTANCE, state=state, status=None)
    assert run(session) == {"redriven": [], "refused": []}


def test_grace_a_job_that_just_ended_and_a_request_just_made_wait(session, world):
    ended = scheduling_instance(session, world)
    session.execute(update(Instance).where(Instance.id == ended.id).values(
        updated_at=utcnow() - timedelta(seconds=120)))
    placement_job(session, ended, wire.SchedulerJob.SCHEDULE_INSTANCE, ago=2)
    fresh = scheduling_instance(session, world)  # no job yet, as if its request were mid-way
    assert run(session, after=60) == {"redriven": [], "refused": []}
    assert run(session, after=1)["redriven"] == [ended.canonical_uuid]
    assert run(session, after=0)["redriven"] == [fresh.canonical_uuid]


def test_a_request_with_no_placement_job_at_all_gets_the_right_one(session, world):
    new = scheduling_instance(session, world)
    start = stopped_then_started(session, world)
    vol = waiting_volume(session, world)
    assert sorted(run(session)["redriven"]) == sorted(
        [new.canonical_uuid, start.canonical_uuid, vol.canonical_uuid])
    assert jobs_of(session, new) == [(wire.SchedulerJob.SCHEDULE_INSTANCE, "pending")]
    assert jobs_of(session, start) == [(wire.SchedulerJob.SCHEDULE_START_INSTANCE, "pending")]
    assert jobs_of(session, vol) == [(wire.SchedulerJob.SCHEDULE_VOLUME, "pending")]


def test_too_many_failed_jobs_refuse_the_request_with_a_typed_reason(session, world):
    new = scheduling_instance(session, world)
    start = stopped_then_started(session, world)
    vol = waiting_volume(session, world)
    for row, name in ((new, wire.SchedulerJob.SCHEDULE_INSTANCE),
                      (start, wire.SchedulerJob.SCHEDULE_START_INSTANCE),
                      (vol, wire.SchedulerJob.SCHEDULE_VOLUME)):
        for _ in range(MAX_JOBS):
            placement_job(session, row, name, message={"error_type": "InternalError",
                                                       "message": "unexpected"})
    refused = run(session)
    assert refused["redriven"] == [] and sorted(refused["refused"]) == sorted(
        [new.canonical_uuid, start.canonical_uuid, vol.canonical_uuid])
    for row in (new, start, vol):
        session.refresh(row)
        assert row.placement_error.startswith(f"PlacementError: {MAX_JOBS} placement jobs")
        assert "InternalError: unexpected" in row.placement_error
    assert (new.state, start.state, vol.state) == ("terminated", "stopped", "deleted")
    assert all(v.state == "deleted" for v in new.volumes)  # as a failed placement leaves it
    assert run(session) == {"redriven": [], "refused": []}
    assert counters_true(session)


def test_a_success_between_failures_restarts_the_count(session, world):
    start = stopped_then_started(session, world)
    name = wire.SchedulerJob.SCHEDULE_START_INSTANCE
    placement_job(session, start, name, ago=9000)
    placement_job(session, start, name, status="success", ago=8000)
    for _ in range(MAX_JOBS - 1):
        placement_job(session, start, name)
    assert run(session)["redriven"] == [start.canonical_uuid]


def test_a_cancelled_placement_job_refuses_the_request(session, world):
    inst = scheduling_instance(session, world)
    job = placement_job(session, inst, wire.SchedulerJob.SCHEDULE_INSTANCE, status="cancel")
    assert run(session)["refused"] == [inst.canonical_uuid]
    session.refresh(inst)
    assert inst.state == "terminated"
    assert inst.placement_error == (f"PlacementError: its placement job "
                                    f"{job.canonical_uuid} was cancelled")


def test_requests_still_waiting_for_their_job_do_not_hide_a_stuck_one(session, world):
    for _ in range(3):  # a backlog being placed: older, and first by id
        placement_job(session, scheduling_instance(session, world),
                      wire.SchedulerJob.SCHEDULE_INSTANCE, state="pending", status=None)
    stuck = scheduling_instance(session, world)
    placement_job(session, stuck, wire.SchedulerJob.SCHEDULE_INSTANCE)
    assert redrive.redrive(session, 0, MAX_JOBS, limit=1)["redriven"] == [stuck.canonical_uuid]
