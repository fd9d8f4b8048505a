"""Publish outbox rows to the broker and stamp them sent.

Runs after the writing transaction committed (``publish_rows``) and periodically
(``sweep``). Rows are claimed under a row lock (``SKIP LOCKED`` on PostgreSQL; SQLite
serialises writers with ``BEGIN IMMEDIATE``) and re-checked unsent, so the after-commit
relay and the sweep never both publish a row. A crash between publish and stamp can
republish a row: the task id is fixed at write time, so receivers recognise the repeat.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from collector.client import EVENTS_EXCHANGE as events_exchange
from collector.client import EVENTS_QUEUE as events_queue
from collector.db import settings_of, skip_locked, unit_of_work
from collector.models.outbox import OutboxMessage
from collector.redaction import masked_repr
from collector.timeutil import utcnow

log = logging.getLogger(__name__)


_publishers: dict[str, Celery] = {}


def publisher(broker_url: str) -> Celery:
    """A Celery app that only publishes: no result backend, so sending a job does not
    subscribe this process to the job's result (agents still store results in theirs)."""
    if broker_url not in _publishers:
        app = Celery("collector-relay", set_as_current=False)
        app.conf.update(
            broker_url=broker_url, result_backend=None, task_serializer="json",
            accept_content=["json"], broker_connection_retry_on_startup=True,
            task_create_missing_queues=True,
            task_publish_retry_policy={"max_retries": 3, "interval_start": 0,
                                       "interval_step": 0.5, "interval_max": 1},
        )
        _publishers[broker_url] = app
    return _publishers[broker_url]


def publish_one(app: Celery, row: OutboxMessage, job_expires: int) -> None:
    payload: dict[str, Any] = row.payload
    options = dict(payload.get("options") or {})
    # What Flower and worker logs show of the arguments: secrets masked.
    shown = {"argsrepr": masked_repr(payload.get("args") or []),
             "kwargsrepr": masked_repr(payload.get("kwargs") or {})}
    if row.kind == "control":
        task_id = payload["args"][0]
        terminate = bool(payload.get("kwargs", {}).get("terminate"))
        app.control.revoke(task_id, terminate=terminate)
        return
    if row.kind == "event":
        app.send_task(
            row.name, args=payload["args"], kwargs=payload.get("kwargs") or {},
            task_id=row.task_id, exchange=events_exchange, routing_key=row.routing_key,
            declare=[events_exchange, events_queue], ignore_result=True, **shown,
        )
        return
    if row.kind == "job":
        # A node back after a long outage must not run day-old commands; the reaper then
        # fails the ledger row of a job that expired before any agent started it.
        options.setdefault("expires", job_expires)
        # The ledger hears the outcome even from agents that do not report (plain Celery).
        options["link"] = app.signature("jobqueue-proxy.job_succeeded", args=[row.task_id],
                                        immutable=True, queue="jobqueue-proxy")
        options["link_error"] = app.signature("jobqueue-proxy.job_failed", args=[row.task_id],
                                              immutable=True, queue="jobqueue-proxy")
    app.send_task(
        row.name, args=payload["args"], kwargs=payload.get("kwargs") or {}, queue=row.queue,
        task_id=row.task_id, ignore_result=row.kind == "task", **shown, **options,
    )


def _claim(session: Session, stmt: Select) -> list[OutboxMessage]:
    return list(session.scalars(skip_locked(session, stmt)))


def publish_rows(app: Celery, row_ids: list[int], db_url: str | None = None) -> int:
    """Publish the given rows if still unsent; returns how many were published."""
    if not row_ids:
        return 0
    stmt = (select(OutboxMessage).where(OutboxMessage.id.in_(row_ids))
            .where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id))
    return _publish_claimed(app, stmt, db_url)


def sweep(app: Celery, older_than: float = 5.0, limit: int = 500,
          db_url: str | None = None) -> int:
    """Publish rows left unsent for more than ``older_than`` seconds."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    stmt = (select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
            .where(OutboxMessage.created_at <= cutoff).order_by(OutboxMessage.id).limit(limit))
    return _publish_claimed(app, stmt, db_url)


def _publish_claimed(app: Celery, stmt: Select, db_url: str | None) -> int:
    sent = 0
    with unit_of_work(db_url) as session:
        job_expires = settings_of(session).job_expires
        for row in _claim(session, stmt):
            row.attempts += 1
            try:
                publish_one(app, row, job_expires)
            except Exception as exc:  # broker down: keep the row for the sweep
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                log.warning("outbox row %s not published: %s", row.id, exc)
                break
            row.sent_at = utcnow()
            sent += 1
    return sent
