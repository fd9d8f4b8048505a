"""The job ledger's state machine, with a session alone."""

from datetime import timedelta

import pytest

from collector.db import db_now, outbox
from collector.errors import AlreadyTerminated, InvalidArgument, UnknownJob
from collector.ids import new_uuid
from collector.models import OutboxMessage, QueuedJob
from collector.services.jobs import ledger as jobqueue
from tests.support.checks import raises_each


def _queue() -> str:
    return f"backup_storage.copy_to.bksta.q{new_uuid()}"


def test_pop_hands_out_the_oldest_pending_job_first(session):
    q = _queue()
    first = jobqueue.submit(session, q, "bo-aaaaaaaa", {"n": 1}, None)
    second = jobqueue.submit(session, q, "bo-bbbbbbbb", {"n": 2}, {})
    assert first["state"] == "pending" and first["retry_count"] == 0
    popped = jobqueue.pop(session, q, "bksta.w1", None)
    assert popped["uuid"] == first["uuid"] and popped["state"] == "running"
    assert popped["worker_id"] == "bksta.w1" and popped["started_at"]
    assert jobqueue.pop(session, q, "bksta.w2", None)["uuid"] == second["uuid"]
    assert jobqueue.pop(session, q, "bksta.w3", None) is None


def test_failed_job_goes_back_to_pending_while_retries_remain(session):
    q = _queue()
    job = jobqueue.submit(session, q, None, {}, {"retry_max": 2})
    jobqueue.pop(session, q, "w1", None)
    again = jobqueue.finish_fail(session, job["uuid"], "disk full")
    assert again["state"] == "pending" and again["worker_id"] is None
    assert again["finish_message"] == {"message": "disk full"}
    jobqueue.pop(session, q, "w1", None)
    done = jobqueue.finish_fail(session, job["uuid"], "disk full again")
    assert (done["state"], done["finish_status"]) == ("finished", "fail")
    with pytest.raises(AlreadyTerminated):
        jobqueue.finish_success(session, job["uuid"])


def test_retry_max_if_zero_applies_on_first_pop(session):
    q = _queue()
    job = jobqueue.submit(session, q, None, {}, None)
    popped = jobqueue.pop(session, q, "w1", {"retry_max_if_zero": 3})
    assert popped["retry_max"] == 3 and popped["retry_count"] == 1
    assert jobqueue.finish_fail(session, job["uuid"], "x")["state"] == "pending"


def test_cancelled_pending_job_is_never_handed_out(session):
    q = _queue()
    job = jobqueue.submit(session, q, None, {}, None)
    assert jobqueue.cancel(session, job["uuid"])["finish_status"] == "cancel"
    assert jobqueue.pop(session, q, "w1", None) is None
    with pytest.raises(AlreadyTerminated):
        jobqueue.cancel(session, job["uuid"])


def test_late_finish_of_a_cancelled_job_is_ignored(session):
    q = _queue()
    job = jobqueue.submit(session, q, None, {}, None)
    jobqueue.pop(session, q, "w1", None)
    jobqueue.cancel(session, job["uuid"])
    assert jobqueue.finish_success(session, job["uuid"], "done")["finish_status"] == "cancel"
    assert jobqueue.finish_fail(session, job["uuid"], "boom")["finish_status"] == "cancel"


def test_pushed_job_has_a_ledger_row_and_runs_once(session):
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.p{new_uuid()}", "reboot", "i-x")
    row = QueuedJob.by_cuuid(session, job_id)
    assert (row.task_id, row.state, row.session_id) == (job_id, "pending", job_id)
    assert jobqueue.running(session, job_id, "hva.p:1")["run"] is True
    # A redelivery while the first worker is alive and heartbeating is skipped.
    assert jobqueue.running(session, job_id, "hva.p:2")["run"] is False
    jobqueue.finish_success(session, job_id)
    assert jobqueue.running(session, job_id, "hva.p:1")["run"] is False


def test_cancel_of_a_running_pushed_job_sends_a_revoke(session):
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.p{new_uuid()}", "reboot", "i-x")
    jobqueue.running(session, job_id, "w1")
    jobqueue.cancel(session, job_id)
    revoke = session.query(OutboxMessage).filter_by(kind="control").order_by(
        OutboxMessage.id.desc()).first()
    assert revoke.payload == {"args": [job_id], "kwargs": {"terminate": True}}
    assert jobqueue.heartbeat(session, job_id, "w1") is False  # the worker learns it


def test_reaper_requeues_a_job_whose_worker_died_then_gives_up(session):
    queue = f"hva-handle.hva.r{new_uuid()}"
    job_id = outbox.jobs.submit(session, queue, "run_local_store", "i-x")
    for _ in range(3):
        assert jobqueue.running(session, job_id, "dead-worker")["run"] is True
        QueuedJob.by_cuuid(session, job_id).heartbeat_at = db_now(session) - timedelta(hours=1)
        reaped = jobqueue.reap(session)
        if job_id in reaped["failed"]:
            break
        assert job_id in reaped["requeued"]
        assert QueuedJob.by_cuuid(session, job_id).state == "pending"
    row = QueuedJob.by_cuuid(session, job_id)
    assert (row.state, row.finish_status) == ("finished", "fail")
    assert "lost" in row.finish_message["message"]
    pushes = session.query(OutboxMessage).filter_by(task_id=job_id).count()
    assert pushes == 3  # the first push and two re-pushes under the same id


def test_unknown_and_malformed_job_ids_are_typed_errors(session):
    raises_each(session, [(UnknownJob, jobqueue.find, "job-zzzzzzzz"),
                          (InvalidArgument, jobqueue.find, "i-zzzzzzzz"),
                          (InvalidArgument, jobqueue.submit, _queue(), None, {},
                           {"retry_max": "3"})])


def test_a_pushed_job_no_agent_started_before_it_expired_is_failed(session):
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.e{new_uuid()}", "reboot", "i-x")
    row = QueuedJob.by_cuuid(session, job_id)
    session.flush()
    row.updated_at = db_now(session) - timedelta(days=2)
    session.flush()
    assert job_id in jobqueue.reap(session)["expired"]
    assert (row.state, row.finish_status) == ("finished", "fail")
    assert "expired" in row.finish_message["message"]


def test_link_callbacks_record_outcomes_only_for_agents_that_do_not_report(session):
    plain = outbox.jobs.submit(session, f"hva-handle.hva.l{new_uuid()}", "reboot", "i-x")
    assert jobqueue.job_succeeded(session, plain)["finish_status"] == "success"
    assert jobqueue.job_succeeded(session, plain)["finish_status"] == "success"  # repeat: no-op
    reported = outbox.jobs.submit(session, f"hva-handle.hva.l{new_uuid()}", "reboot", "i-x",
                                  retry_max=2)
    jobqueue.running(session, reported, "w1")
    jobqueue.finish_fail(session, reported, "boom")  # the library requeued it
    assert jobqueue.job_failed(session, reported)["state"] == "pending"  # not counted twice
    assert QueuedJob.by_cuuid(session, reported).retry_count == 1
    failing = outbox.jobs.submit(session, f"hva-handle.hva.l{new_uuid()}", "reboot", "i-x")
    assert jobqueue.job_failed(session, failing)["finish_status"] == "fail"


def test_repeated_failure_report_pushes_the_job_again_only_once(session):
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.r{new_uuid()}", "reboot",
                                retry_max=3)
    assert jobqueue.running(session, job_id, "w1")["run"]
    assert jobqueue.finish_fail(session, job_id, "boom")["state"] == "pending"
    assert jobqueue.finish_fail(session, job_id, "boom")["state"] == "pending"  # a repeat
    assert session.query(OutboxMessage).filter_by(task_id=job_id).count() == 2


def test_a_retried_running_report_of_the_same_worker_counts_one_delivery(session):
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.r{new_uuid()}", "reboot")
    assert jobqueue.running(session, job_id, "w1")["run"]
    again = jobqueue.running(session, job_id, "w1")  # its answer was lost: asked again
    assert again["run"] and again["job"]["delivery_count"] == 1
    assert not jobqueue.running(session, job_id, "w2")["run"]
