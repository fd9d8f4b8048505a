"""Publish outbox rows to the broker and stamp them sent.

Two paths, neither holding a transaction while it talks to the broker (on SQLite that
would stall every writer for as long as the broker keeps the relay waiting):

- after the commit (``publish_committed``): the rows a unit of work just wrote, still in
  memory, are published, then stamped sent in one short transaction. They were written
  claimed by this path (``claimed_until``, COLLECTOR_OUTBOX_CLAIM_SEC ahead), so the sweep
  does not publish them at the same moment; a row this path could not send is unclaimed
  at once, and one whose process died is swept when its claim ends;
- the sweep (``sweep``, beat) and ``publish_rows``: rows are claimed in one short
  transaction (``claimed_until``, under ``SKIP LOCKED`` on PostgreSQL), published, then
  stamped. Concurrent sweeps split the rows; a claim left by a relay that died expires
  after ``CLAIM_SECONDS`` and the row is taken again.

A row that fails on its own (its publish raises) does not hold back the rows after it; its
``attempts`` grow, and after COLLECTOR_OUTBOX_MAX_ATTEMPTS it is stamped ``failed_at`` and
parked as a dead letter (``collector dead-letters replay`` hands it back). A broker that
cannot be reached ends the batch at once and counts against no row. A crash between
publish and stamp can republish a row: the task id is fixed at write time, so receivers
recognise the repeat. An event nobody would act on (``unheard_events``: no Collector
handler, no agent's queue bound for it) is stamped sent without a publish.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis.exceptions
from celery import Celery
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerUnreachable
from kombu.transport.virtual.exchange import TopicExchange
from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from collector import wire
from collector.config import (
    Settings,
    load_settings,
    redis_transport_options,
    signing_credential,
    ssl_options_for,
)
from collector.db import any_of, db_now, get_engine, outbox, skip_locked, unit_of_work
from collector.models.outbox import OutboxMessage
from collector.redaction import masked_repr
from collector.services import dead_letters
from collector.signing import COLLECTOR
from collector.timeutil import utcnow
from workers.agent.client import EVENTS_EXCHANGE as events_exchange
from workers.agent.client import EVENTS_QUEUE as events_queue
from workers.agent.client import broker_transport_for
from workers.agent.signing import sign_messages

log = logging.getLogger(__name__)

LEDGER_SUCCEEDED = wire.task(wire.JOBQUEUE_PROXY, wire.LedgerCallback.JOB_SUCCEEDED)
LEDGER_FAILED = wire.task(wire.JOBQUEUE_PROXY, wire.LedgerCallback.JOB_FAILED)
CLAIM_SECONDS = 60.0
BROKER_ERRORS = (BrokerUnreachable, redis.exceptions.ConnectionError,
                 redis.exceptions.TimeoutError, ConnectionError, TimeoutError)

_publishers: dict[str, Celery] = {}


def publisher(broker_url: str) -> Celery:
    """A Celery app that only publishes: no result backend, so sending a job does not
    subscribe this process to the job's result (agents still store results in theirs)."""
    if broker_url not in _publishers:
        settings = load_settings()
        app = Celery("collector-relay", set_as_current=False)
        app.conf.update(
            broker_url=broker_url, result_backend=None, task_serializer="json",
            accept_content=["json"], broker_connection_retry_on_startup=True,
            task_create_missing_queues=True,
            task_publish_retry_policy={"max_retries": 3, "interval_start": 0,
                                       "interval_step": 0.5, "interval_max": 1},
            # A broker that accepts the connection and then says nothing must not keep the
            # relay (and the call it runs after) waiting forever.
            broker_transport_options={"socket_timeout": 10, "socket_connect_timeout": 5,
                                      **redis_transport_options(settings, broker_url)},
            broker_use_ssl=ssl_options_for(settings, broker_url),
            broker_transport=broker_transport_for(broker_url),
        )
        _publishers[broker_url] = sign_messages(app, signing_credential(settings, COLLECTOR))
    return _publishers[broker_url]


def publish_one(app: Celery, row: OutboxMessage, job_expires: int,
                producer: Any = None) -> None:
    """Send one row (through ``producer``, when given: a batch's)."""
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
            declare=[events_exchange, events_queue], ignore_result=True, producer=producer,
            **shown,
        )
        return
    if row.kind == "job":
        # A node back after a long outage must not run day-old commands; the reaper then
        # fails the ledger row of a job that expired before any agent started it.
        options.setdefault("expires", job_expires)
        # The ledger hears the outcome even from agents that do not report (plain Celery).
        # The Collector's own jobs end their ledger row in the transaction of their work
        # (``tasks.registry.Endpoint``): only a failure that committed nothing
        # needs telling.
        if row.queue not in outbox.COLLECTOR_JOB_QUEUES:
            options["link"] = app.signature(LEDGER_SUCCEEDED, args=[row.task_id],
                                            immutable=True, queue=wire.JOBQUEUE_PROXY)
        options["link_error"] = app.signature(LEDGER_FAILED, args=[row.task_id],
                                              immutable=True, queue=wire.JOBQUEUE_PROXY)
    # ``declare=[]``: Celery sends to a queue by its name (the default exchange), and a Redis
    # queue is a list its first message creates, so declaring it would only bind it to an
    # exchange of its own name that nothing publishes to: two more round trips for the first
    # message to each node's queue in each process (a thousand-host launch: one per job).
    app.send_task(
        row.name, args=payload["args"], kwargs=payload.get("kwargs") or {}, queue=row.queue,
        task_id=row.task_id, ignore_result=row.kind == "task", producer=producer, declare=[],
        **shown, **options,
    )


@dataclass
class Outcome:
    """What one pass of publishing did: rows sent, rows that failed on their own (id ->
    error), rows not tried because the broker could not be reached."""

    sent: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    untried: list[int] = field(default_factory=list)
    broker_error: str | None = None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def unheard_events(producer: Any, rows: Sequence[OutboxMessage]) -> set[int]:
    """The ids of the event rows nobody would act on: no Collector handler takes the event
    (``awaiting_receipt`` false: the dispatcher would answer it and do nothing) and no queue
    but the dispatcher's is bound to the events exchange for its routing key. An agent that
    subscribes (nsa to ``instance.scheduled``) binds a queue of its own, and then the event
    is sent. One read of the exchange's bindings, which the transport would read anyway
    for each event it routes; a transport that keeps them elsewhere sends every event."""
    quiet = [row for row in rows if row.kind == "event" and not row.awaiting_receipt
             and row.routing_key]
    get_table = getattr(producer.channel, "get_table", None)
    if not quiet or get_table is None:
        return set()
    table = get_table(events_exchange.name)
    topic = TopicExchange(producer.channel)
    return {row.id for row in quiet
            if not topic.lookup(table, events_exchange.name, row.routing_key, None)
            - {events_queue.name}}


def _publish_all(app: Celery, rows: Sequence[OutboxMessage], job_expires: int) -> Outcome:
    """Publish the rows, outside any transaction, in one Redis pipeline (kombu's publish
    batch: one round trip, where a publish each cost one). A broker outage ends the batch,
    and then no row of it counts as sent: what the pipeline held is discarded, what an
    earlier flush of a long batch sent may be sent again (receivers know the task id).
    An event nobody would act on (``unheard_events``) counts as sent without a publish."""
    outcome = Outcome()
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            unheard = unheard_events(producer, rows)
            for row in rows:
                if row.id in unheard:
                    outcome.sent.append(row.id)
                    continue
                try:
                    publish_one(app, row, job_expires, producer)
                except BROKER_ERRORS:
                    raise
                except Exception as exc:  # noqa: BLE001 - this row's own failure; the next rows go on
                    outcome.failed[row.id] = _describe(exc)
                    log.warning("outbox row %s (%s %s) not published: %s", row.id, row.kind,
                                row.name, exc)
                    continue
                outcome.sent.append(row.id)
    except (*BROKER_ERRORS, BatchPublishError) as exc:
        outcome.broker_error = _describe(exc)
        outcome.sent = []
        outcome.untried = [r.id for r in rows if r.id not in outcome.failed]
        log.warning("broker unreachable (%s): %d outbox row(s) left for the sweep",
                    exc, len(outcome.untried))
    return outcome


def _stamp_sent(ids: list[int], now: Any) -> Any:
    return update(OutboxMessage).where(
        OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None)).values(
        sent_at=now, claimed_until=None, attempts=OutboxMessage.attempts + 1)


# The usual stamp on PostgreSQL, built once: ``ids`` and ``now`` bound at each pass.
_STAMP_SENT_PG = update(OutboxMessage).where(
    any_of(OutboxMessage.id, "ids"), OutboxMessage.sent_at.is_(None)).values(
    sent_at=bindparam("now", type_=OutboxMessage.sent_at.type), claimed_until=None,
    attempts=OutboxMessage.attempts + 1)


def _stamp(outcome: Outcome, db_url: str | None) -> None:
    """Record an outcome in one short transaction."""
    if not (outcome.sent or outcome.failed or outcome.untried):
        return
    if not (outcome.failed or outcome.untried):  # the usual outcome: one UPDATE, no session
        engine = get_engine(db_url)
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":  # the UPDATE commits itself: one round
                conn.execution_options(isolation_level="AUTOCOMMIT")  # trip, not three
                conn.execute(_STAMP_SENT_PG, {"ids": outcome.sent, "now": utcnow()})
            else:
                conn.execute(_stamp_sent(outcome.sent, utcnow()))
            conn.commit()
        return
    with unit_of_work(db_url) as session:
        now = utcnow()
        if outcome.sent:
            session.execute(_stamp_sent(outcome.sent, now))
        if outcome.untried:
            session.execute(update(OutboxMessage).where(
                OutboxMessage.id.in_(outcome.untried), OutboxMessage.sent_at.is_(None)).values(
                claimed_until=None))
            session.execute(update(OutboxMessage).where(
                OutboxMessage.id == outcome.untried[0]).values(last_error=outcome.broker_error))
        if outcome.failed:
            _count_failures(session, outcome.failed, now)


def _count_failures(session: Session, failed: dict[int, str], now: Any) -> None:
    max_attempts = load_settings().outbox_max_attempts
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.id.in_(failed), OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.id).with_for_update())
    for row in rows:
        row.attempts += 1
        row.last_error, row.claimed_until = failed[row.id], None
        if row.attempts >= max_attempts and row.failed_at is None:
            row.failed_at = now
            payload = row.payload if isinstance(row.payload, dict) else {}
            letter = dead_letters.park(
                session, source="outbox", task_name=row.name, queue=row.queue,
                task_id=row.task_id, args=list(payload.get("args") or []),
                kwargs=dict(payload.get("kwargs") or {}), error_type="PublishFailed",
                error=row.last_error, attempts=row.attempts, outbox_id=row.id)
            log.error("outbox row %s (%s %s) failed %d times: parked as dead letter %d",
                      row.id, row.kind, row.name, row.attempts, letter)


def publish_committed(app: Celery, rows: Sequence[OutboxMessage], db_url: str | None = None,
                      settings: Settings | None = None) -> int:
    """The after-commit path: publish rows just committed (in memory), then stamp them.
    ``settings``: the caller's (a worker reads its own once), else read now."""
    if not rows:
        return 0
    settings = settings or load_settings()
    outcome = _publish_all(app, rows, settings.job_expires)
    _stamp(outcome, db_url or settings.database_url)
    return len(outcome.sent)


def _claim(stmt: Select, db_url: str | None) -> list[OutboxMessage]:
    """Claim the selected rows in one short transaction; returns them detached."""
    with unit_of_work(db_url) as session:
        now = db_now(session)
        stmt = stmt.where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
                          or_(OutboxMessage.claimed_until.is_(None),
                              OutboxMessage.claimed_until < now))
        rows = list(session.scalars(skip_locked(session, stmt)))
        until = now + timedelta(seconds=CLAIM_SECONDS)
        for row in rows:
            row.claimed_until = until
    return rows


def _publish_claimed(app: Celery, stmt: Select, db_url: str | None) -> int:
    rows = _claim(stmt, db_url)
    if not rows:
        return 0
    outcome = _publish_all(app, rows, load_settings().job_expires)
    _stamp(outcome, db_url)
    return len(outcome.sent)


def publish_rows(app: Celery, row_ids: list[int], db_url: str | None = None) -> int:
    """Publish the given rows if still unsent and unclaimed; returns how many were sent."""
    if not row_ids:
        return 0
    stmt = select(OutboxMessage).where(OutboxMessage.id.in_(row_ids)).order_by(OutboxMessage.id)
    return _publish_claimed(app, stmt, db_url)


def sweep(app: Celery, older_than: float = 5.0, limit: int = 500,
          db_url: str | None = None) -> int:
    """Publish rows left unsent for more than ``older_than`` seconds."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    stmt = (select(OutboxMessage).where(OutboxMessage.created_at <= cutoff)
            .order_by(OutboxMessage.id).limit(limit))
    return _publish_claimed(app, stmt, db_url)
