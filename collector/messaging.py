"""Jobs and events written to the outbox in the caller's transaction.

Nothing is sent here. The rows become messages after the commit: the relay installed by
the task layer (``set_relay``) publishes them, and a periodic sweep publishes whatever a
crash left behind. If the transaction rolls back, the rows vanish and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from collector import ids
from collector.db import after_commit
from collector.models.outbox import OutboxMessage
from collector.timeutil import to_iso, utcnow

EVENTS_EXCHANGE = "collector.events"
EVENT_TASK = "events.deliver"
COLLECTOR_SENDER = "collector.master"

_relay: Callable[[list[int]], None] | None = None


def set_relay(relay: Callable[[list[int]], None] | None) -> None:
    """Install the after-commit publisher (the task layer does this at import)."""
    global _relay
    _relay = relay


def _relay_after_commit(session: Session, row: OutboxMessage) -> None:
    pending: list[OutboxMessage] = session.info.setdefault("outbox_rows", [])
    if not pending:
        def _publish() -> None:
            row_ids = [r.id for r in session.info.pop("outbox_rows", [])]
            if _relay is not None and row_ids:
                _relay(row_ids)

        after_commit(session, _publish)
    pending.append(row)


def endpoint_of(queue: str) -> str:
    """``hva-handle.hva.demo1`` -> ``hva-handle`` (the part before the node id)."""
    return queue.split(".", 1)[0]


def job_task_name(queue: str, job_name: str) -> str:
    return f"{endpoint_of(queue)}.{job_name}"


def write(
    session: Session, *, kind: str, name: str, payload: dict[str, Any], queue: str | None = None,
    routing_key: str | None = None, task_id: str | None = None,
) -> OutboxMessage:
    """Add one outbox row to the session; it is relayed after the commit."""
    row = OutboxMessage(
        kind=kind, name=name, payload=payload, queue=queue, routing_key=routing_key,
        task_id=task_id or f"msg-{ids.new_uuid()}{ids.new_uuid()}",
    )
    session.add(row)
    session.flush()
    _relay_after_commit(session, row)
    return row


# Collector endpoints that take jobs themselves: their queue is the endpoint's own queue
# (``scheduler``), served by Collector workers instead of one node's agent.
COLLECTOR_JOB_QUEUES = frozenset({"scheduler"})


class Jobs:
    """Jobs for node agents (``<endpoint>.<node_id>``) and for the Collector's own job
    endpoints (``COLLECTOR_JOB_QUEUES``): one ledger row and one outbox row, in the
    caller's transaction."""

    def submit(
        self, session: Session, queue: str, job_name: str, *args: Any,
        resource_id: str | None = None, expires: int | None = None, retry_max: int = 0,
    ) -> str:
        """Queue ``job_name(*args)`` on ``queue``; returns the job id."""
        if not isinstance(queue, str) or ("." not in queue
                                          and queue not in COLLECTOR_JOB_QUEUES):
            raise ValueError(f"job queue must be '<endpoint>.<node_id>' or one of "
                             f"{sorted(COLLECTOR_JOB_QUEUES)}, got {queue!r}")
        from collector.services.jobqueue import record_pushed_job  # the ledger uses messaging

        job_id = record_pushed_job(session, job_id=f"job-{ids.new_uuid()}", queue=queue,
                                   job_name=job_name, args=list(args), resource_id=resource_id,
                                   retry_max=retry_max)
        options: dict[str, Any] = {}
        if expires:
            options["expires"] = expires
        write(
            session, kind="job", name=job_task_name(queue, job_name), queue=queue, task_id=job_id,
            payload={"args": list(args), "kwargs": {}, "options": options},
        )
        return job_id


class Events:
    """Events fan out to every subscribing role (see ``collector.services.event_bus``)."""

    def publish(
        self, session: Session, event: str, args: Iterable[Any] = (),
        sender: str = COLLECTOR_SENDER,
    ) -> str:
        if not isinstance(event, str) or not event:
            raise ValueError("event name must be a non-empty string")
        row = write(
            session, kind="event", name=EVENT_TASK, routing_key=f"{event}.{sender}",
            payload={"args": [event, list(args), sender, to_iso(utcnow())], "kwargs": {}},
        )
        return row.task_id


class Tasks:
    """A plain Celery task to a named queue, sent after commit."""

    def send(self, session: Session, queue: str, name: str, *args: Any, **kwargs: Any) -> str:
        row = write(session, kind="task", name=name, queue=queue,
                    payload={"args": list(args), "kwargs": kwargs, "options": {}})
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
