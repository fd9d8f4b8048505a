"""Event receipts: a repeat is recognised, a message with no receipt is re-sent (a session
alone; the delivery end to end is tests/integration/delivery/test_events_exactly_once.py)."""

from datetime import timedelta

from collector.ids import new_uuid
from collector.models import DISPATCH, EventReceipt, OutboxMessage
from collector.services import dead_letters, event_receipts
from collector.timeutil import utcnow

HANDLER = "events.alarm-collector.on_instance_terminated"
TERMINATED = ["hva/instance_terminated", ["i-abc12345"], "hva.demo1"]


def test_a_receipt_is_written_once_per_event_and_handler(session):
    # The database may be shared with other tests: only this test's events are counted.
    one, two = f"ev-1-{new_uuid()}", f"ev-2-{new_uuid()}"
    assert event_receipts.record(session, one, DISPATCH)
    assert not event_receipts.record(session, one, DISPATCH)
    assert event_receipts.record(session, one, HANDLER)
    assert event_receipts.record(session, two, HANDLER)
    assert not event_receipts.record(session, two, HANDLER)
    assert session.query(EventReceipt).filter(EventReceipt.event_id.in_([one, two])).count() == 3


def test_a_handler_message_id_is_fixed_by_event_and_handler_and_fits_the_outbox():
    long_id = "x" * 200
    one = event_receipts.handler_message_id(long_id, HANDLER)
    assert one == event_receipts.handler_message_id(long_id, HANDLER) and len(one) <= 64
    assert one != event_receipts.handler_message_id(long_id, "events.event-hook.x")
    assert one != event_receipts.handler_message_id("y", HANDLER)


def _row(session, kind, *, sent_ago, name="events.deliver", queue=None, task_id=None,
         kwargs=None, created_ago=None, failed=False, awaiting=True):
    now = utcnow()
    row = OutboxMessage(awaiting_receipt=awaiting,
        kind=kind, name=name, queue=queue, routing_key="hva/instance_terminated.hva.demo1"
        if kind == "event" else None, task_id=task_id or f"t-{kind}-{sent_ago}-{id(kwargs)}",
        payload={"args": TERMINATED, "kwargs": kwargs or {}, "options": {}},
        created_at=now - timedelta(seconds=created_ago or sent_ago or 0),
        sent_at=None if sent_ago is None else now - timedelta(seconds=sent_ago),
        failed_at=now if failed else None)
    session.add(row)
    session.flush()
    return row


# Rows sent SENT seconds ago, past a deadline of DEADLINE: in a database shared with other
# tests (PostgreSQL), every row of theirs was sent more recently and is left out.
SENT, DEADLINE, YOUNG = 50_000, 40_000, 30_000


def test_the_resend_pass_takes_what_has_no_receipt_once_its_deadline_passed(session):
    lost_event = _row(session, "event", sent_ago=SENT, task_id="ev-lost")
    dispatched = _row(session, "event", sent_ago=SENT, task_id="ev-done")
    event_receipts.record(session, "ev-done", DISPATCH, "ev-done")
    _row(session, "event", sent_ago=YOUNG, task_id="ev-young")  # within its deadline
    _row(session, "event", sent_ago=SENT, created_ago=90_000, task_id="ev-old")  # past retention
    _row(session, "event", sent_ago=None, task_id="ev-unsent")  # the sweep's
    _row(session, "event", sent_ago=SENT, task_id="ev-failed", failed=True)  # a dead letter's

    def handler_row(event_id, task_id):
        return _row(session, "task", sent_ago=SENT, name=HANDLER, queue="events.alarm-collector",
                    task_id=task_id, kwargs={"event_id": event_id})

    lost_handler = handler_row("ev-a", "h-lost")
    handler_row("ev-b", "h-done")
    event_receipts.record(session, "ev-b", HANDLER, "h-done")
    handler_row("ev-c", "h-parked")
    dead_letters.park(session, source="task", task_name=HANDLER, queue="events.alarm-collector",
                      task_id="h-parked", args=TERMINATED, kwargs={"event_id": "ev-c"},
                      error_type="ValueError", error="x")
    # Sent before receipts existed: no event id, not followed.
    _row(session, "task", sent_ago=SENT, name=HANDLER, queue="events.alarm-collector",
         task_id="h-legacy", awaiting=False)
    # A replayed dispatcher letter carries its event's id; a repeat of one dispatched
    # already stops waiting too.
    replayed = _row(session, "task", sent_ago=SENT, queue="events", task_id="replay-1",
                    kwargs={"event_id": "ev-replayed"})
    _row(session, "task", sent_ago=SENT, queue="events", task_id="replay-2",
         kwargs={"event_id": "ev-done"})
    assert not event_receipts.record(session, "ev-done", DISPATCH, "replay-2")
    _row(session, "task", sent_ago=SENT, name="vnet-collector.schedule_vifs",
         queue="vnet-collector", task_id="other", awaiting=False)  # not an event's

    resent = event_receipts.resend_events(session, older_than=DEADLINE, retention=86_400)

    assert sorted(resent) == sorted([lost_event.id, lost_handler.id, replayed.id])
    assert lost_event.sent_at is None and lost_handler.sent_at is None  # for the relay
    assert dispatched.sent_at is not None
    # Unsent now: not taken again until the relay has sent it and the deadline passed again.
    assert event_receipts.resend_events(session, older_than=DEADLINE, retention=86_400) == []


def test_the_resend_pass_is_bounded(session):
    for n in range(5):
        _row(session, "event", sent_ago=SENT + n, task_id=f"ev-{n}")
    first = event_receipts.resend_events(session, older_than=DEADLINE, retention=86_400, limit=3)
    second = event_receipts.resend_events(session, older_than=DEADLINE, retention=86_400, limit=3)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)


def test_old_receipts_are_purged(session):
    new, old = f"ev-new-{new_uuid()}", f"ev-old-{new_uuid()}"
    event_receipts.record(session, new, DISPATCH)
    session.add(EventReceipt(event_id=old, handler=DISPATCH,
                             processed_at=utcnow() - timedelta(days=3)))
    session.flush()
    assert event_receipts.purge_receipts(session, older_than=2 * 86_400) >= 1
    assert [r.event_id for r in session.query(EventReceipt).filter(
        EventReceipt.event_id.in_([new, old]))] == [new]


def test_the_dispatcher_fans_an_event_out_once_under_fixed_handler_ids(session):
    import tasks.endpoints.alarm_collector  # noqa: F401 - registers the subscriptions
    import tasks.endpoints.event_hook  # noqa: F401
    from tasks.event_bus import dispatch_once

    event, args, sender = TERMINATED
    event_id = f"ev-x-{new_uuid()}"
    sent = dispatch_once(session, event_id, event, args, sender)
    assert HANDLER in sent
    assert dispatch_once(session, event_id, event, args, sender) == {"duplicate": True}
    rows = session.query(OutboxMessage).filter(OutboxMessage.payload[
        ("kwargs", "event_id")].as_string() == event_id).all()
    assert sorted(r.name for r in rows) == sorted(sent)  # one row per handler, once
    assert all(r.awaiting_receipt for r in rows)  # re-sent until handled
    assert {r.task_id for r in rows} == {event_receipts.handler_message_id(event_id, r.name)
                                         for r in rows}
    assert all(r.payload["kwargs"] == {"event_id": event_id} for r in rows)


def test_a_handler_runs_once_per_event_id(session):
    from tasks.event_bus import Subscription, handle_once

    ran = []
    sub = Subscription("alarm-collector", "hva/instance_terminated", "#", "on_x",
                       lambda _session, args, sender: ran.append((args, sender)) or "done")
    message = _row(session, "task", sent_ago=60, name="events.alarm-collector.on_x",
                   queue="events.alarm-collector", task_id="h-y", kwargs={"event_id": "ev-y"})
    assert handle_once(session, sub, "ev-y", ["i-1"], "hva.demo1", "h-y") == "done"
    session.refresh(message)
    assert not message.awaiting_receipt  # handled: never re-sent
    assert handle_once(session, sub, "ev-y", ["i-1"], "hva.demo1") == {"duplicate": True}
    assert handle_once(session, sub, "ev-z", ["i-1"], "hva.demo1") == "done"
    assert handle_once(session, sub, None, ["i-1"], "hva.demo1") == "done"  # no id: runs
    assert len(ran) == 3
