"""A job no agent took in time is sent again under its id; one taken, still in the outbox,
or for a node that is down is not (``redelivery.redeliver_untaken``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from collector import wire
from collector.config import SettingsError, load_settings
from collector.db import outbox
from collector.ids import new_uuid
from collector.models import NodeState, OutboxMessage, QueuedJob
from collector.services.jobs import ledger, redelivery
from collector.timeutil import utcnow


def node(session, state: str = "online") -> str:
    node_id = f"hva.r{new_uuid()}"
    session.add(NodeState(node_id=node_id, state=state, boot_token="t"))
    session.flush()
    return node_id


def pushed(session, node_id: str, job: str = wire.HvaJob.REBOOT) -> str:
    job_id = outbox.jobs.submit(session, f"hva-handle.{node_id}", job, "i-abc12345")
    session.flush()
    return job_id


def sent(session, job_id: str, ago: float) -> None:
    """The job's messages were published ``ago`` seconds ago and its deadline passed."""
    session.execute(update(OutboxMessage).where(OutboxMessage.task_id == job_id).values(
        sent_at=utcnow() - timedelta(seconds=ago)))
    session.execute(update(QueuedJob).where(QueuedJob.task_id == job_id).values(
        redeliver_at=utcnow() - timedelta(seconds=1)))
    session.expire_all()


def messages(session, job_id: str) -> int:
    return len(session.scalars(select(OutboxMessage.id).where(
        OutboxMessage.task_id == job_id)).all())


def mine(session, job_ids: list[str]) -> list[str]:
    return sorted(j for j in redelivery.redeliver_untaken(session) if j in job_ids)


def test_a_job_past_its_deadline_is_sent_again_under_its_id_with_a_longer_deadline(session):
    job_id = pushed(session, node(session))
    job = QueuedJob.by_cuuid(session, job_id)
    first = job.redeliver_at
    assert first is not None and 25 < (first - utcnow()).total_seconds() <= 30
    sent(session, job_id, ago=40)
    assert mine(session, [job_id]) == [job_id]
    session.flush()
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.task_id == job_id)).all()
    assert len(rows) == 2 and {r.name for r in rows} == {wire.task(wire.HVA_HANDLE,
                                                                   wire.HvaJob.REBOOT)}
    job = QueuedJob.by_cuuid(session, job_id)
    assert job.redeliveries == 1 and job.state == "pending"
    assert (job.redeliver_at - utcnow()).total_seconds() > 55  # twice the deadline now
    # Its new message is not sent yet: nothing more is sent for it meanwhile.
    session.execute(update(QueuedJob).where(QueuedJob.task_id == job_id).values(
        redeliver_at=utcnow() - timedelta(seconds=1)))
    assert mine(session, [job_id]) == []


def test_a_taken_job_an_unsent_one_and_one_of_a_node_down_are_left_alone(session):
    up, down = node(session), node(session, state="offline")
    taken, unsent, waiting = pushed(session, up), pushed(session, up), pushed(session, down)
    for job_id in (taken, waiting):
        sent(session, job_id, ago=40)
    ledger.running(session, taken, "agent-1")
    session.execute(update(QueuedJob).where(QueuedJob.task_id == unsent).values(
        redeliver_at=utcnow() - timedelta(seconds=1)))
    assert mine(session, [taken, unsent, waiting]) == []
    assert [messages(session, j) for j in (taken, unsent, waiting)] == [1, 1, 1]
    # The job of the node that is down is looked at again a deadline later.
    assert QueuedJob.by_cuuid(session, waiting).redeliver_at > utcnow()


def test_deadlines_per_endpoint_and_per_job(monkeypatch):
    monkeypatch.setenv("COLLECTOR_JOB_TAKE_DEADLINE", "20")
    monkeypatch.setenv("COLLECTOR_JOB_TAKE_DEADLINES", "sta-handle=120, hva-handle.reboot=5")
    settings = load_settings()
    assert outbox.take_deadline(settings, "sta-handle.sta1", "delete_volume") == 120
    assert outbox.take_deadline(settings, "hva-handle.h1", "reboot") == 5
    assert outbox.take_deadline(settings, "hva-handle.h1", "poweroff") == 20
    monkeypatch.setenv("COLLECTOR_JOB_TAKE_DEADLINES", "sta-handle=soon")
    with pytest.raises(SettingsError, match="COLLECTOR_JOB_TAKE_DEADLINES"):
        load_settings()
