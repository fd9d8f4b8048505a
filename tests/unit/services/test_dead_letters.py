"""Parking, listing and replaying dead letters, with a session alone."""

import pytest

from collector.errors import UnknownDeadLetter
from collector.models import OutboxMessage
from collector.services import dead_letters


def _park(session, **extra) -> int:
    return dead_letters.park(session, **{
        "source": "task", "task_name": "events.alarm-collector.on_instance_terminated",
        "queue": "events.alarm-collector", "task_id": "t-1",
        "args": ["hva/instance_terminated", ["i-abc12345"], "hva.demo1"], "kwargs": {},
        "error_type": "TransientError", "error": "connection refused", "attempts": 6, **extra})


def test_a_replayed_letter_is_sent_again_through_the_outbox_once(session):
    letter = _park(session)
    listed = [d["id"] for d in dead_letters.list_dead_letters(session)]
    assert letter in listed
    doc = dead_letters.replay(session, letter)
    assert doc["replay_count"] == 1 and doc["replayed_at"]
    [row] = session.query(OutboxMessage).filter_by(
        name="events.alarm-collector.on_instance_terminated", sent_at=None).all()
    assert (row.kind, row.queue) == ("task", "events.alarm-collector")
    assert row.payload["args"] == ["hva/instance_terminated", ["i-abc12345"], "hva.demo1"]
    assert letter not in [d["id"] for d in dead_letters.list_dead_letters(session)]
    assert letter in [d["id"] for d in dead_letters.list_dead_letters(session, True)]


def test_replay_pending_skips_letters_already_replayed(session):
    first, second = _park(session), _park(session, task_id="t-2")
    dead_letters.replay(session, first)
    assert second in dead_letters.replay_pending(session)
    assert first not in dead_letters.replay_pending(session)


def test_an_unknown_letter_is_a_typed_error(session):
    with pytest.raises(UnknownDeadLetter):
        dead_letters.replay(session, 10**9)
