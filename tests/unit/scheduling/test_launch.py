"""A bulk launch: ``api.create_instances`` writes ``count`` instances and one
``schedule_launch`` job; the job places at least ``min_count`` of them or none (each then
terminated with the typed reason, nothing claimed); the re-drive pass submits a stuck
launch's job again. SQLite and PostgreSQL, in the scheduling tests' ``world`` (two hosts of
4 cores and 4 GB of a hypervisor of their own)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from collector import errors, wire
from collector.db import db_now, outbox
from collector.models import HostAllocation, HostNode, Instance, NetworkVifIpLease, QueuedJob
from collector.models.outbox import OutboxMessage
from collector.scheduling import batch, redrive
from collector.services.api import instances as api
from collector.services.api.placement_groups import create_placement_group
from tests.support.scheduling import counters_true


def params(world, **more: Any) -> dict[str, Any]:
    return {"image_id": world.local_image.canonical_uuid, "hypervisor": world.hv,
            "cpu_cores": 2, "memory_size": 1024,
            "vifs": {"eth0": {"network": world.net.canonical_uuid}}, **more}


def launch_job(session, first_id: str) -> QueuedJob:
    return session.scalars(select(QueuedJob).where(
        QueuedJob.resource_id == first_id,
        QueuedJob.job_name == wire.SchedulerJob.SCHEDULE_LAUNCH).order_by(QueuedJob.id.desc())
    ).first()


def launched(session, world, count: int, min_count: int | None = None,
             **more: Any) -> tuple[list[str], QueuedJob]:
    docs = api.create_instances(session, params(world, **more), count, min_count)
    ids = [doc["id"] for doc in docs]
    return ids, launch_job(session, ids[0])


def held(session) -> dict[str, Any]:
    """What placement claims and leases, and the rows a request writes."""
    session.flush()
    return {
        "hosts": session.execute(select(HostNode.id, HostNode.used_cpu_cores,
                                        HostNode.used_memory_size, HostNode.used_disk_bytes)
                                 .order_by(HostNode.id)).all(),
        **{model.__tablename__: session.scalar(select(func.count()).select_from(model))
           for model in (Instance, HostAllocation, QueuedJob, OutboxMessage)},
        "leases": session.scalar(select(func.count()).select_from(NetworkVifIpLease)
                                 .where(NetworkVifIpLease.deleted_at.is_(None))),
    }


def states(session, ids: list[str]) -> list[tuple[str, str | None]]:
    rows = [Instance.by_cuuid(session, i) for i in ids]
    for row in rows:
        session.refresh(row)
    return [(row.state, row.placement_error) for row in rows]


# --- the request --------------------------------------------------------------------------

def test_a_launch_writes_its_instances_and_one_job_naming_them(session, world):
    ids, job = launched(session, world, 3, 2)
    assert len(set(ids)) == 3
    assert job.queue_name == wire.SCHEDULER and job.params == {"args": [ids, 2]}
    assert session.scalar(select(func.count()).select_from(QueuedJob).where(
        QueuedJob.resource_id.in_(ids))) == 1  # no job of its own per instance
    for inst in (Instance.by_cuuid(session, i) for i in ids):
        assert (inst.state, inst.request_params["launch"]) == ("scheduling", ids[0])
        assert inst.hostname == inst.uuid and len(inst.volumes) == 1  # its own boot volume
    assert launched(session, world, 2)[1].params["args"][1] == 2  # min_count: all of them


@pytest.mark.parametrize("count, min_count, more", [
    (0, None, {}), (1001, None, {}), ("3", None, {}), (True, None, {}), (3, 0, {}),
    (3, 4, {}), (3, "2", {}), (2, None, {"hostname": "web"}),
    (2, None, {"vifs": {"eth0": {"network": "nw-nothere0", "ipv4_addr": "10.0.0.9"}}}),
    (2, None, {"cpu_cores": 0}), (2, None, {"colour": "blue"}),
], ids=["zero", "too-many", "count-text", "count-bool", "min-zero", "min-above-count",
        "min-text", "one-hostname", "manual-address", "bad-request", "unknown-key"])
def test_bad_input_is_a_typed_error_and_writes_nothing(session, world, count, min_count, more):
    before = held(session)
    with pytest.raises(errors.InvalidParameter):
        api.create_instances(session, params(world, **more), count, min_count)
    assert held(session) == before


def test_an_unknown_image_writes_nothing(session, world):
    before = held(session)
    with pytest.raises(errors.UnknownImageID):
        api.create_instances(session, params(world, image_id="wmi-nothere0"), 3)
    assert held(session) == before


# --- the job --------------------------------------------------------------------------------

def test_the_launch_job_places_every_instance(session, world):
    ids, job = launched(session, world, 3)
    answer = batch.schedule_launch(session, *job.params["args"])
    assert (answer["outcome"], answer["placed"]) == ("placed", 3)
    assert [a["instance_id"] for a in answer["instances"]] == ids
    assert {state for state, _ in states(session, ids)} == {"pending"}
    assert counters_true(session)
    # A repeated job changes nothing.
    assert batch.schedule_launch(session, ids, 3)["outcome"] == "noop"


def test_min_count_reached_keeps_what_was_placed(session, world):
    ids, job = launched(session, world, 5, 3)  # room for 4 instances of 2 cores
    answer = batch.schedule_launch(session, *job.params["args"])
    assert (answer["outcome"], answer["placed"]) == ("placed", 4)
    found = states(session, ids)
    assert [s for s, _ in found].count("pending") == 4
    [(state, reason)] = [f for f in found if f[0] != "pending"]
    assert state == "terminated" and reason.startswith("InsufficientCapacity: ")
    assert counters_true(session)


def test_min_count_out_of_reach_places_none_and_refuses_each(session, world):
    ids, job = launched(session, world, 5)  # min_count 5; room for 4
    before = held(session)
    answer = batch.schedule_launch(session, *job.params["args"])
    assert (answer["outcome"], answer["error_type"], answer["placed"]) == (
        "failed", "InsufficientCapacity", 0)
    assert answer["message"].startswith("only 4 of min_count 5 could be placed: ")
    for state, reason in states(session, ids):
        assert state == "terminated"
        assert reason.startswith("InsufficientCapacity: only 4 of min_count 5 could be placed")
    assert {a["outcome"] for a in answer["instances"]} == {"failed"}
    after = held(session)
    # Nothing claimed, leased or dispatched: only the failed instances' own teardown rows.
    assert (after["hosts"], after["host_allocations"], after["leases"]) == (
        before["hosts"], before["host_allocations"], before["leases"])
    scheduled = session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "event", OutboxMessage.routing_key.like("instance.scheduled.%")))
    assert [m for m in scheduled if set(m.payload["args"][1]) & set(ids)] == []
    assert counters_true(session)


def test_a_failed_launch_fails_its_task_with_the_typed_error(session, world):
    from tasks.endpoints.scheduler import fail_on_failed_outcome

    ids, job = launched(session, world, 5)
    with pytest.raises(errors.InsufficientCapacity, match="only 4 of min_count 5"):
        fail_on_failed_outcome(batch.schedule_launch(session, *job.params["args"]))


def test_the_placement_group_applies_to_every_instance(session, world):
    group = create_placement_group(session, {"name": "web", "policy": "anti-affinity"})
    ids, job = launched(session, world, 3, 2, cpu_cores=1, placement_group=group["id"])
    answer = batch.schedule_launch(session, *job.params["args"])
    assert (answer["outcome"], answer["placed"]) == ("placed", 2)
    hosts = [a["host_node_id"] for a in answer["instances"] if a["outcome"] == "placed"]
    assert len(set(hosts)) == 2  # one per host: two hosts
    [refused] = [a for a in answer["instances"] if a["outcome"] == "failed"]
    assert "anti-affinity" in refused["message"]


@pytest.mark.parametrize("instance_ids, min_count, error", [
    ("i-abc", 1, errors.InvalidArgument), ([], 1, errors.InvalidArgument),
    (None, 1, errors.InvalidArgument), (["i-nothere0"], 1, errors.UnknownInstanceID),
    (["i-nothere0"], 2, errors.InvalidArgument), (["i-nothere0"], True, errors.InvalidArgument),
], ids=["not-a-list", "empty", "none", "unknown", "min-above", "min-bool"])
def test_bad_job_arguments_are_typed_and_write_nothing(session, world, instance_ids, min_count,
                                                       error):
    before = held(session)
    with pytest.raises(error):
        batch.schedule_launch(session, instance_ids, min_count)
    assert held(session) == before


def test_a_repeated_id_is_refused(session, world):
    ids, _ = launched(session, world, 2)
    with pytest.raises(errors.InvalidArgument):
        batch.schedule_launch(session, [ids[0], ids[0]], 1)


# --- the re-drive pass ---------------------------------------------------------------------

def _end(session, job: QueuedJob) -> None:
    """The job failed an hour ago."""
    job.state, job.finish_status = "finished", "fail"
    job.finished_at = db_now(session) - timedelta(hours=1)
    job.finish_message = {"error_type": "TransientError", "message": "down"}


def test_a_launch_whose_job_is_alive_is_left_to_it(session, world):
    launched(session, world, 3)
    assert redrive.redrive(session, 0, 3) == {"redriven": [], "refused": []}


def test_a_stuck_launch_gets_its_job_again_once_and_it_places_them(session, world):
    ids, job = launched(session, world, 3, 2)
    _end(session, job)
    session.flush()
    assert redrive.redrive(session, 0, 3) == {"redriven": [ids[0]], "refused": []}
    again = launch_job(session, ids[0])
    assert again.id != job.id and again.params == job.params and again.state == "pending"
    assert redrive.redrive(session, 0, 3) == {"redriven": [], "refused": []}
    assert batch.schedule_launch(session, *again.params["args"])["placed"] == 3


def test_a_launch_whose_jobs_keep_failing_refuses_each_instance(session, world):
    ids, job = launched(session, world, 3)
    _end(session, job)
    for _ in range(2):
        _end(session, QueuedJob.by_cuuid(session, outbox.jobs.submit(
            session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_LAUNCH, ids, 3,
            resource_id=ids[0])))
    session.flush()
    assert sorted(redrive.redrive(session, 0, 3)["refused"]) == sorted(ids)
    for state, reason in states(session, ids):
        assert state == "terminated" and reason.startswith("PlacementError: 3 placement jobs")
    assert counters_true(session)
