"""Jobs delivered end to end: a job no agent took in time is sent again under its id.

A job for a node counts as delivered when its agent takes it (``jobqueue-proxy.running``
moves it out of ``pending``), not when Redis accepted its message: a message Redis
acknowledged can still vanish (a crash before its append-only file was written, a failover
to a replica that had not received it, a consumer killed between kombu's ``BRPOP`` and its
unacknowledged record). Every message of a job sets ``redeliver_at`` (its take deadline
from now, doubled at each redelivery, ``collector.db.outbox``); this pass sends the job
again when that time has passed and the job is still ``pending``.

A copy is harmless: consumers take a job through the ledger, which lets one copy run
(``ledger.running``). What is not sent again:

- a job whose message is still in the outbox (the relay or the sweep sends it);
- a job of a node that is not online (nor only late: ``timeout``), or that never reported:
  no agent can take it; it is looked at again a deadline later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from collector.db import db_now, outbox, settings_of, skip_locked
from collector.models import NodeState, OutboxMessage, QueuedJob
from collector.timeutil import utcnow

log = logging.getLogger(__name__)

# Node states whose agent may take a job: online, or late with its heartbeat (``timeout``).
REACHABLE = ("online", "timeout")


def _due(now: datetime) -> Select:
    return select(QueuedJob).where(QueuedJob.state == "pending", QueuedJob.redeliver_at < now,
                                   QueuedJob.task_id.is_not(None))


def any_due(session: Session) -> bool:
    """Whether a job may be due to be sent again (a read, no lock)."""
    return session.scalar(_due(utcnow()).with_only_columns(QueuedJob.id).limit(1)) is not None


def redeliver_untaken(session: Session, limit: int = 500) -> list[str]:
    """Send again the pending jobs past their take deadline; their ids."""
    now = db_now(session)
    unsent = exists().where(OutboxMessage.task_id == QueuedJob.task_id,
                            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
    stmt = _due(now).where(~unsent).order_by(QueuedJob.redeliver_at).limit(limit)
    jobs = list(session.scalars(skip_locked(session, stmt)))
    if not jobs:
        return []
    nodes = {job.queue_name: job.queue_name.split(".", 1)[1] for job in jobs}
    online = set(session.scalars(select(NodeState.node_id).where(
        NodeState.node_id.in_(set(nodes.values())), NodeState.state.in_(REACHABLE))))
    settings = settings_of(session)
    sent = []
    for job in jobs:
        if nodes[job.queue_name] not in online:
            deadline = outbox.take_deadline(settings, job.queue_name, job.job_name)
            job.redeliver_at = now + timedelta(seconds=deadline)
            continue
        job.redeliveries += 1
        outbox.job_message(session, job)
        sent.append(job.canonical_uuid)
    if sent:
        log.warning("sent %d job(s) again that no agent took in time: %s", len(sent),
                    ", ".join(sent[:10]) + (" ..." if len(sent) > 10 else ""))
    return sent
