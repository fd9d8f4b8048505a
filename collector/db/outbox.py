"""Jobs and events written to the outbox in the caller's transaction.

Nothing is sent here. The rows become messages after the commit: the unit of work
collects them (``collector.db.record_outbox_row``), the task layer's relay publishes
them, and a periodic sweep publishes whatever a crash left behind. If the transaction
rolls back, the rows vanish and nothing is sent.

Every job has its ledger row (``queued_jobs``) written here, beside its message, and its
message is built in one place (``job_message``), for the first push and every re-push. A
job for a node is delivered when its agent takes it (``jobqueue-proxy.running``), not when
Redis accepts its message: each message sets when it is sent again if no agent took the job
by then (``redeliver_at``: the job's take deadline, doubled at each redelivery;
``collector.services.jobs.redelivery``).

Rows written by a unit of work whose caller relays them after the commit
(``RELAYED_BY_CALLER``) are claimed by that caller for COLLECTOR_OUTBOX_CLAIM_SEC: the sweep
leaves them alone meanwhile, so a row is not published by both at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from collector import ids, wire
from collector.config import Settings
from collector.db import insert_objects_now, record_outbox_row, settings_of
from collector.db.transactions import RELAYED_BY_CALLER
from collector.jobcontext import current_job
from collector.models.jobs import QueuedJob
from collector.models.outbox import OutboxMessage
from collector.timeutil import to_iso, utcnow

# Queues of the Collector's own job endpoints (no node id): their jobs have ledger rows too.
COLLECTOR_JOB_QUEUES = frozenset({wire.SCHEDULER})
# A job sent again and again waits at most this many times its take deadline.
LONGEST_BACKOFF = 64


def take_deadline(settings: Settings, queue: str, job_name: str | None) -> float:
    """Seconds an agent has to take a job of ``queue`` (``<endpoint>.<node_id>``) after its
    message was sent: COLLECTOR_JOB_TAKE_DEADLINES for ``<endpoint>.<job_name>``, else for
    ``<endpoint>``, else COLLECTOR_JOB_TAKE_DEADLINE."""
    endpoint = wire.endpoint_of(queue)
    per_kind = settings.job_take_deadlines
    return per_kind.get(f"{endpoint}.{job_name}", per_kind.get(endpoint,
                                                                settings.job_take_deadline))


def write(
    session: Session, *, kind: str, name: str, payload: dict[str, Any], queue: str | None = None,
    routing_key: str | None = None, task_id: str | None = None, awaiting_receipt: bool = False,
    at_once: bool = False,
) -> OutboxMessage:
    """Add one outbox row to the session; it is relayed after the commit.
    ``awaiting_receipt``: sent again until its receiver writes its receipt (events).
    ``at_once``: inserted now (``insert_objects_now``) rather than at the next flush."""
    row = OutboxMessage(
        kind=kind, name=name, payload=payload, queue=queue, routing_key=routing_key,
        task_id=task_id or f"msg-{ids.new_uuid()}{ids.new_uuid()}",
        awaiting_receipt=awaiting_receipt,
    )
    if session.info.get(RELAYED_BY_CALLER):
        row.claimed_until = utcnow() + timedelta(seconds=settings_of(session).outbox_claim_sec)
    if not (at_once and insert_objects_now(session, [row])):
        session.add(row)  # flushed with the caller's other rows (one multi-row INSERT)
    record_outbox_row(session, row)
    return row


def job_message(session: Session, job: QueuedJob, expires: int | None = None,
                at_once: bool = False) -> OutboxMessage:
    """The outbox row that (re)sends a pushed job under its fixed id (``at_once``: see
    ``write``)."""
    options: dict[str, Any] = {"expires": expires} if expires else {}
    if job.queue_name not in COLLECTOR_JOB_QUEUES:  # the Collector's own: redrive's
        deadline = take_deadline(settings_of(session), job.queue_name, job.job_name)
        backoff = min(2 ** (job.redeliveries or 0), LONGEST_BACKOFF)
        job.redeliver_at = utcnow() + timedelta(seconds=deadline * backoff)
    return write(session, kind="job", name=wire.task(wire.endpoint_of(job.queue_name), job.job_name or ""),
                 queue=job.queue_name, task_id=job.task_id,
                 payload={"args": list((job.params or {}).get("args", [])), "kwargs": {},
                          "options": options}, at_once=at_once)


class Jobs:
    """Jobs for node agents (``<endpoint>.<node_id>``) and for the Collector's own job
    endpoints (``COLLECTOR_JOB_QUEUES``): one ledger row and one outbox row, in the
    caller's transaction."""

    def submit(
        self, session: Session, queue: str, job_name: str, *args: Any,
        resource_id: str | None = None, expires: int | None = None, retry_max: int = 0,
        generation: int | None = None, held: bool = False, after: str | None = None,
        held_until: datetime | None = None, at_once: bool = False,
    ) -> str:
        """Queue ``job_name(*args)`` for the node queue ``queue``; returns the job id.

        ``at_once``: its ledger row and its message are inserted now, one statement each,
        instead of at the next flush (``collector.db.insert_objects_now``; a savepoint keeps
        them to the flush): a flush of the unit of work costs twice the CPU of the inserts.

        ``generation``: the placement generation of the instance the job is for.
        ``held``: the job waits in the ledger (state ``held``, no message sent yet) until the
        job ``after`` finishes, or until ``held_until``, whichever comes first; with neither,
        until its node comes back (``collector.services.jobs.held``)."""
        if not isinstance(queue, str) or ("." not in queue and queue not in COLLECTOR_JOB_QUEUES):
            raise ValueError(f"job queue must be '<endpoint>.<node_id>', got {queue!r}")
        job_id = f"job-{ids.new_uuid()}"
        parent = current_job.get()
        parent_row = QueuedJob.find_cuuid(session, parent.job_id) if parent else None
        awaited = QueuedJob.by_cuuid(session, after) if after else None
        job = QueuedJob(uuid=ids.raw_part(job_id, "job"), task_id=job_id, queue_name=queue,
                        job_name=job_name, params={"args": list(args)}, resource_id=resource_id,
                        state="held" if held else "pending", retry_max=retry_max,
                        retry_count=0, delivery_count=0, generation=generation,
                        after_job_id=awaited.id if awaited else None, held_until=held_until,
                        parent_id=parent_row.id if parent_row else None,
                        session_id=parent.session_id if parent else job_id)
        if not held:  # the message first: it sets the job's redelivery time
            job_message(session, job, expires, at_once)
        if not (at_once and insert_objects_now(session, [job])):
            session.add(job)
        return job_id


# Whether an event (name, sender) has a handler in the Collector: installed by the task
# layer's event bus, which knows the subscriptions. Unknown (None): every event has one.
_handled_by_collector: Callable[[str, str], bool] | None = None


def route_events_by(handled_by_collector: Callable[[str, str], bool] | None) -> None:
    """Install what says whether an event has a Collector handler (None: assume it has)."""
    global _handled_by_collector
    _handled_by_collector = handled_by_collector


class Events:
    """Events fan out to every subscribing role (see ``tasks.event_bus``)."""

    def publish(
        self, session: Session, event: str, args: Iterable[Any] = (),
        sender: str = wire.COLLECTOR_SENDER,
    ) -> str:
        """An event is sent again until the Collector's dispatcher has its receipt, when a
        Collector handler takes it; one that only agents may subscribe to is sent once (its
        dispatch writes nothing)."""
        if not isinstance(event, str) or not event:
            raise ValueError("event name must be a non-empty string")
        handled = _handled_by_collector is None or _handled_by_collector(event, sender)
        row = write(
            session, kind="event", name=wire.EVENT_DELIVER, routing_key=f"{event}.{sender}",
            payload={"args": [event, list(args), sender, to_iso(utcnow())], "kwargs": {}},
            awaiting_receipt=handled,
        )
        return row.task_id


class Tasks:
    """A plain Celery task to a named queue, sent after commit."""

    def send(self, session: Session, queue: str, name: str, *args: Any,
             task_id: str | None = None, awaiting_receipt: bool = False, **kwargs: Any) -> str:
        """``task_id``: a fixed message id (receivers recognise a repeat), else a new one;
        ``awaiting_receipt``: sent again until its receiver writes its receipt."""
        row = write(session, kind="task", name=name, queue=queue, task_id=task_id,
                    payload={"args": list(args), "kwargs": kwargs, "options": {}},
                    awaiting_receipt=awaiting_receipt)
        return row.task_id


class Control:
    """Worker control commands sent after commit (revoke a cancelled job)."""

    def revoke(self, session: Session, task_id: str, terminate: bool = False) -> None:
        write(session, kind="control", name="revoke",
              payload={"args": [task_id], "kwargs": {"terminate": terminate}})


jobs = Jobs()
events = Events()
tasks = Tasks()
control = Control()
