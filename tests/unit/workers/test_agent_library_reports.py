"""The agent library's ledger reports, against a Collector that fails on purpose."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject

from workers.agent import base as agent_module
from workers.agent.base import Agent
from workers.agent.client import RpcError, RpcTimeout


def _agent(monkeypatch, answers: list) -> tuple[Agent, list]:
    """An agent whose Collector calls answer from ``answers`` (an exception is raised)."""
    agent = Agent("hva.unit1", "redis://127.0.0.1:1/0", report_retry_for=2)
    calls = []

    def call(endpoint: str, method: str, *args):
        calls.append(method)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(agent.collector, "call", call)
    monkeypatch.setattr(agent_module.time, "sleep", lambda _s: None)
    return agent, calls


def _run(agent: Agent) -> object:
    return agent._run_job("job-unit0001", "reboot", lambda ctx: "done", None, ())


def test_reports_are_retried_through_transient_errors(monkeypatch):
    running = {"run": True, "reason": "", "job": {"session_id": None}}
    agent, calls = _agent(monkeypatch, [
        RpcTimeout("no answer"), RpcError("TransientError", "deadlock"), running,
        RpcError("TransientError", "down"), {"state": "finished"}])
    assert _run(agent) == "done"
    assert calls == ["running"] * 3 + ["finish_success"] * 2


def test_a_finish_already_applied_is_not_an_error(monkeypatch):
    running = {"run": True, "reason": "", "job": {"session_id": None}}
    agent, calls = _agent(monkeypatch, [
        running, RpcTimeout("answer lost"), RpcError("AlreadyTerminated", "finished")])
    assert _run(agent) == "done"
    assert calls == ["running", "finish_success", "finish_success"]


def test_a_ledger_that_cannot_be_asked_sends_the_message_back_unrun(monkeypatch):
    monkeypatch.setattr(agent_module, "RUNNING_REPORT_RETRY_FOR", 0.0)
    agent, calls = _agent(monkeypatch, [RpcTimeout("no answer")])
    with pytest.raises(Reject):
        _run(agent)


def test_a_refused_job_fails_its_task_instead_of_coming_back(monkeypatch):
    agent, calls = _agent(monkeypatch, [RpcError("UnknownJob", "unknown id")])
    with pytest.raises(RpcError) as info:
        _run(agent)
    assert info.value.error_type == "UnknownJob" and calls == ["running"]


def test_a_job_sent_again_before_its_success_was_reported_is_not_run_again(monkeypatch):
    """The reaper sent the job again while the Collector could not be reached (its success
    report was late): the ledger lets the copy run; the process reports the success again."""
    from celery.exceptions import Ignore

    running = {"run": True, "reason": "", "job": {"session_id": None}}
    agent, calls = _agent(monkeypatch, [running, {"state": "finished"},
                                        running, {"state": "finished"}])
    runs = []
    handler = lambda ctx: runs.append(ctx.job_id) or {"ok": 1}  # noqa: E731
    assert agent._run_job("job-unit0002", "reboot", handler, None, ()) == {"ok": 1}
    with pytest.raises(Ignore):
        agent._run_job("job-unit0002", "reboot", handler, None, ())
    assert runs == ["job-unit0002"]
    assert calls == ["running", "finish_success", "running", "finish_success"]
