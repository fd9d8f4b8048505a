"""The agent library runs a job handler again through retryable failures instead of failing
the job, and drops a copy it does not run with ``Ignore`` (no result, no link callback),
against a Collector that answers from a script."""

from __future__ import annotations

import threading

import pytest
from celery.exceptions import Ignore

from workers.agent import base as agent_module
from workers.agent.base import Agent, JobContext, retryable_job_error
from workers.agent.client import BrokerUnavailable, RpcError, RpcTimeout

RUN = {"run": True, "reason": "", "job": {"session_id": None}}


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(agent_module, "JOB_RETRY_FIRST_DELAY", 0.001)
    monkeypatch.setattr(agent_module, "JOB_RETRY_LONGEST_DELAY", 0.001)
    monkeypatch.setattr(agent_module.time, "sleep", lambda _s: None)


def agent_answering(monkeypatch, answers: dict[str, list], job_retry_for: float = 60) -> tuple:
    """An agent whose ledger reports answer from ``answers`` (per method, in turn); the
    reports it made: (method, finish message) in order."""
    agent = Agent("hva.unit2", "redis://127.0.0.1:1/0", report_retry_for=2,
                  job_retry_for=job_retry_for, job_heartbeat_interval=3600)
    calls: list[tuple] = []

    def call(endpoint: str, method: str, *args, timeout=None):
        calls.append((method, args[1]) if method.startswith("finish") else (method,))
        answer = answers[method].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(agent.collector, "call", call)
    return agent, calls


def failing(*errors: Exception):
    """A handler failing with each of ``errors`` in turn, then answering "booted"."""
    runs: list[int] = []

    def handler(ctx: JobContext) -> str:
        runs.append(1)
        if len(runs) <= len(errors):
            raise errors[len(runs) - 1]
        return "booted"

    return handler, runs


def run(agent: Agent, handler, on_failure=None) -> object:
    return agent._run_job("job-unit0002", "run_local_store", handler, on_failure, ())


def test_a_handler_meeting_transient_failures_runs_again_and_the_job_succeeds(monkeypatch):
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_success": [{}]})
    handler, runs = failing(RpcError("TransientError", "the database is down"),
                            RpcTimeout("no answer"), BrokerUnavailable("broker down"))
    assert run(agent, handler) == "booted" and len(runs) == 4
    assert [c[0] for c in calls] == ["running", "finish_success"]  # no finish_fail


def test_a_handler_whose_report_met_a_cut_commit_runs_again_and_the_job_succeeds(monkeypatch):
    """The Collector could not tell whether the report committed (PostgreSQL stopped during
    its COMMIT): a report is answered as it was the first time, so the handler runs again."""
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_success": [{}]})
    handler, runs = failing(RpcError("CommitOutcomeUnknown", "may have been committed"))
    assert run(agent, handler) == "booted" and len(runs) == 2
    assert [c[0] for c in calls] == ["running", "finish_success"]


def test_a_refusal_fails_the_job_at_once(monkeypatch):
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_fail": [{}]})
    hooked = []
    handler, runs = failing(RpcError("InvalidStateTransition", "running -> pending"))
    with pytest.raises(RpcError):
        run(agent, handler, on_failure=lambda ctx, exc: hooked.append(exc.error_type))
    assert len(runs) == 1 and hooked == ["InvalidStateTransition"]
    assert calls == [("running",), ("finish_fail", {
        "message": "InvalidStateTransition: running -> pending", "error_type": "RpcError"})]


def test_retries_end_when_the_time_allowed_is_spent(monkeypatch):
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_fail": [{}]},
                                   job_retry_for=0)
    handler, runs = failing(*[RpcError("TransientError", "down")] * 5)
    with pytest.raises(RpcError):
        run(agent, handler)
    assert len(runs) == 1 and [c[0] for c in calls] == ["running", "finish_fail"]


def test_a_job_cancelled_while_it_waits_to_run_again_fails_as_it_stands(monkeypatch):
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_fail": [{}]})
    monkeypatch.setattr(agent_module, "JOB_RETRY_FIRST_DELAY", 30.0)
    runs: list[int] = []

    def handler(ctx: JobContext) -> str:
        runs.append(1)
        threading.Timer(0.05, ctx._cancel.set).start()  # the heartbeat is told: cancelled
        raise RpcError("TransientError", "down")

    with pytest.raises(RpcError):
        run(agent, handler)
    assert len(runs) == 1 and [c[0] for c in calls] == ["running", "finish_fail"]


def test_which_failures_are_worth_running_again():
    assert all(retryable_job_error(exc) for exc in (
        RpcError("TransientError", "x"), RpcTimeout("x"), BrokerUnavailable("x"),
        ConnectionRefusedError("x"), RpcError("CommitOutcomeUnknown", "may have committed")))
    assert not any(retryable_job_error(exc) for exc in (
        RpcError("InternalError", "may have committed"), RpcError("UnknownInstanceID", "x"),
        RuntimeError("x"), ValueError("x")))


@pytest.mark.parametrize("reason", [
    "already finished (success)", "already finished (cancel)", "running on hva.other:1:aa",
    "too many deliveries"])
def test_a_copy_the_ledger_says_not_to_run_is_dropped_without_a_result(monkeypatch, reason):
    agent, calls = agent_answering(monkeypatch, {"running": [
        {"run": False, "reason": reason, "job": {}}]})
    handler, runs = failing()
    with pytest.raises(Ignore):
        run(agent, handler)
    assert runs == [] and calls == [("running",)]


def test_a_copy_arriving_while_this_process_runs_the_job_is_dropped(monkeypatch):
    agent, calls = agent_answering(monkeypatch, {"running": [RUN], "finish_success": [{}]})
    inside, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def handler(ctx: JobContext) -> str:
        inside.set()
        release.wait(10)
        return "booted"

    first = threading.Thread(target=lambda: outcomes.append(run(agent, handler)))
    first.start()
    assert inside.wait(10)
    with pytest.raises(Ignore):  # the second copy: no answer, no link, no ledger call
        run(agent, handler)
    release.set()
    first.join(10)
    assert outcomes == ["booted"]
    assert [c[0] for c in calls] == ["running", "finish_success"]
