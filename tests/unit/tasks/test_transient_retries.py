"""Scheduler jobs and ledger callbacks that meet ``TransientError`` are retried with backoff
(``tasks.registry.RetryTransient``), then do their work; a refusal is never retried, and an
RPC caller of a scheduler task gets the error at once. Tasks run eagerly (Celery's retry
runs the new try at once) on a committed SQLite database."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from celery import Task

from collector import wire
from collector.db import outbox, unit_of_work
from collector.errors import InsufficientCapacity, TransientError
from collector.ids import new_uuid
from collector.models import Instance, QueuedJob
from tasks import registry
from tasks.endpoints import jobqueue_proxy, scheduler
from tasks.registry import RetryTransient
from tests.support.scheduling import make_world, scheduling_instance

# Binding the registry's tasks warns that Celery 6 drops the ``queue`` task attribute.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")


def schedule_instance() -> Task:
    return scheduler.endpoint.tasks[wire.SchedulerJob.SCHEDULE_INSTANCE]


@pytest.fixture()
def db(committed_db):
    return committed_db


@pytest.fixture()
def failing_first(monkeypatch):
    """The registry's unit of work fails with TransientError ``n`` times, then works; the
    countdowns the retry policy chose are recorded."""
    record = SimpleNamespace(calls=0, countdowns=[], failures=0)
    real_run, real_countdown = registry.run_in_unit_of_work, RetryTransient.countdown

    def flaky(*args, **kwargs):
        record.calls += 1
        if record.calls <= record.failures:
            raise TransientError("the database cannot serve the call now")
        return real_run(*args, **kwargs)

    def countdown(self, task):
        record.countdowns.append(real_countdown(self, task))
        return record.countdowns[-1]

    monkeypatch.setattr(registry, "run_in_unit_of_work", flaky)
    monkeypatch.setattr(RetryTransient, "countdown", countdown)

    def fail(n: int) -> SimpleNamespace:
        record.failures = n
        return record

    return fail


def waiting_instance(url: str, cpu: int = 1) -> str:
    with unit_of_work(url) as session:
        return scheduling_instance(session, make_world(session), cpu=cpu).canonical_uuid


def state_of(url: str, instance_id: str) -> tuple[str, str | None]:
    with unit_of_work(url) as session:
        inst = Instance.by_cuuid(session, instance_id)
        return inst.state, inst.placement_error


def test_countdowns_back_off_to_the_longest_until_the_time_allowed_is_spent(monkeypatch):
    monkeypatch.setenv("COLLECTOR_JOB_RETRY_FOR", "100")
    monkeypatch.setenv("COLLECTOR_EVENT_RETRY_BACKOFF_MAX", "30")
    policy, rpc_only = RetryTransient(jobs_only=True), RetryTransient()

    def request(retries: int, task_id: str = "job-abcdefgh", direct: bool = False):
        return SimpleNamespace(request=SimpleNamespace(
            id=task_id, retries=retries, called_directly=direct))

    assert [policy.countdown(request(n)) for n in range(9)] == \
        [1, 2, 4, 8, 16, 30, 30, 30, None]  # 121 s waited before the 9th: more than 100
    assert policy.countdown(request(0, str(uuid.uuid4()))) is None  # an RPC call
    assert rpc_only.countdown(request(0, str(uuid.uuid4()))) == 1
    assert rpc_only.countdown(request(0, direct=True)) is None  # no message to send again


def test_a_placement_job_meeting_transient_errors_is_retried_then_places(db, failing_first):
    record = failing_first(2)
    instance_id = waiting_instance(db)
    result = schedule_instance().apply(args=[instance_id], task_id=f"job-{new_uuid()}")
    assert result.get()["outcome"] == "placed"
    assert (record.calls, record.countdowns) == (3, [1, 2])
    assert state_of(db, instance_id) == ("pending", None)


def test_a_placement_refused_is_its_outcome_and_never_retried(db, failing_first):
    record = failing_first(0)
    instance_id = waiting_instance(db, cpu=99)
    result = schedule_instance().apply(args=[instance_id], task_id=f"job-{new_uuid()}")
    assert isinstance(result.result, InsufficientCapacity)
    assert (record.calls, record.countdowns) == (1, [])
    state, reason = state_of(db, instance_id)
    assert state == "terminated" and reason.startswith("InsufficientCapacity: ")


def test_a_scheduler_task_called_as_an_rpc_answers_transient_error_at_once(db, failing_first):
    record = failing_first(1)
    instance_id = waiting_instance(db)
    result = schedule_instance().apply(args=[instance_id], task_id=str(uuid.uuid4()))
    assert isinstance(result.result, TransientError)
    assert (record.calls, record.countdowns) == (1, [None])
    assert state_of(db, instance_id) == ("scheduling", None)


def test_a_success_callback_meeting_transient_errors_is_retried_then_finishes_the_job(
        db, failing_first, monkeypatch):
    record = failing_first(1)
    backend = iter([TransientError("the result backend cannot be read now"), "SUCCESS",
                    "SUCCESS"])

    def result_state(task_id: str, expected: str) -> str:
        answer = next(backend)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(jobqueue_proxy, "result_state", result_state)
    with unit_of_work(db) as session:
        job_id = outbox.jobs.submit(session, f"hva-handle.hva.u{new_uuid()}",
                                    wire.HvaJob.REBOOT, "i-abc12345")
    result = jobqueue_proxy.endpoint.tasks[wire.LedgerCallback.JOB_SUCCEEDED].apply(args=[job_id])
    assert result.get()["finish_status"] == "success"
    # The backend unreadable, then the database: two retries, the third try finishes it.
    assert record.countdowns == [1, 2] and record.calls == 2
    with unit_of_work(db) as session:
        job = QueuedJob.by_cuuid(session, job_id)
        assert (job.state, job.finish_status) == ("finished", "success")
