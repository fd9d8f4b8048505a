"""A ledger row whose outcome callback was lost is finished from the job's own outcome in the
result backend, exactly as the callback would have finished it (``reconcile``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from collector import wire
from collector.db import outbox
from collector.ids import new_uuid
from collector.models import QueuedJob
from collector.services.jobs import ledger, reconcile
from collector.services.jobs.reconcile import FAILURE, SUCCESS, Awaiting, Outcome
from collector.timeutil import utcnow


def pushed(session, retry_max: int = 0, age: float = 120) -> str:
    """A pushed job no agent library reports, last changed ``age`` seconds ago."""
    job_id = outbox.jobs.submit(session, f"hva-handle.hva.r{new_uuid()}", wire.HvaJob.REBOOT,
                                "i-abc12345", retry_max=retry_max)
    session.flush()
    backdate(session, job_id, age)
    return job_id


def backdate(session, job_id: str, age: float) -> None:
    session.execute(update(QueuedJob).where(QueuedJob.task_id == job_id).values(
        updated_at=utcnow() - timedelta(seconds=age)))
    session.expire_all()


def row(session, job_id: str) -> tuple:
    job = QueuedJob.by_cuuid(session, job_id)
    return job.state, job.finish_status, job.finish_message


def awaiting(session, job_ids: list[str], older_than: float = 30) -> list[Awaiting]:
    return [a for a in reconcile.awaiting_outcome(session, older_than) if a.job_id in job_ids]


def test_a_lost_success_and_a_lost_failure_finish_their_rows(session):
    ok, bad = pushed(session), pushed(session)
    seen = awaiting(session, [ok, bad])
    assert sorted(seen, key=lambda a: a.job_id != ok) == [Awaiting(ok, 0), Awaiting(bad, 0)]
    failure = {"error_type": "RuntimeError", "message": "cannot reboot"}
    done = reconcile.apply_outcomes(session, seen, {ok: Outcome(SUCCESS),
                                                    bad: Outcome(FAILURE, failure)})
    assert done == {"succeeded": [ok], "failed": [bad]}
    assert row(session, ok)[:2] == ("finished", "success")
    assert row(session, bad) == ("finished", "fail", failure)
    # Twice, or a callback arriving late, changes nothing more.
    assert reconcile.apply_outcomes(session, seen, {ok: Outcome(SUCCESS),
                                                    bad: Outcome(FAILURE, failure)}) == \
        {"succeeded": [], "failed": []}
    assert ledger.job_succeeded(session, ok)["finish_status"] == "success"


def test_rows_a_callback_may_still_finish_or_an_agent_reports_are_left_alone(session):
    young = pushed(session, age=1)
    reported = pushed(session)
    ledger.running(session, reported, "hva.w1")  # the agent library reports this one
    assert awaiting(session, [young, reported]) == []
    assert awaiting(session, [young], older_than=0.5) == [Awaiting(young, 0)]


def test_an_outcome_recorded_meanwhile_wins(session):
    job_id = pushed(session)
    seen = awaiting(session, [job_id])
    ledger.job_failed(session, job_id, {"message": "the callback came after all"})
    assert reconcile.apply_outcomes(session, seen, {job_id: Outcome(SUCCESS)}) == \
        {"succeeded": [], "failed": []}
    assert row(session, job_id)[:2] == ("finished", "fail")


def test_a_failure_of_an_earlier_try_does_not_fail_the_next_one(session):
    job_id = pushed(session, retry_max=2)
    ledger.job_failed(session, job_id, {"message": "first try"})  # pushed again
    assert row(session, job_id)[0] == "pending"
    backdate(session, job_id, 60)
    [seen] = awaiting(session, [job_id])
    assert seen.retry_count == 1
    stale = Outcome(FAILURE, {"message": "first try"}, utcnow() - timedelta(seconds=90))
    assert reconcile.apply_outcomes(session, [seen], {job_id: stale})["failed"] == []
    assert row(session, job_id)[0] == "pending"
    fresh = Outcome(SUCCESS, None, utcnow() - timedelta(seconds=5))
    assert reconcile.apply_outcomes(session, [seen], {job_id: fresh})["succeeded"] == [job_id]
    assert row(session, job_id)[:2] == ("finished", "success")
