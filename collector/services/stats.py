"""The figures operators ask for: job ledger per queue, outbox backlog, node states.

One read-only pass of grouped counts (``collector stats``); cheap enough to poll.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collector.db import db_now
from collector.models import Instance, NodeState, OutboxMessage, QueuedJob


def collector_stats(session: Session) -> dict[str, Any]:
    """``{"jobs": {queue: {pending, running, succeeded, failed, cancelled}}, "outbox": {...},
    "nodes": {state: count}, "instances": {state: count}}``."""
    outcome = case(
        (QueuedJob.state != "finished", QueuedJob.state),
        (QueuedJob.finish_status == "success", "succeeded"),
        (QueuedJob.finish_status == "fail", "failed"),
        (QueuedJob.finish_status == "cancel", "cancelled"),
        else_="finished",
    )
    jobs: dict[str, dict[str, int]] = {}
    for queue, state, count in session.execute(
            select(QueuedJob.queue_name, outcome, func.count())
            .group_by(QueuedJob.queue_name, outcome).order_by(QueuedJob.queue_name)):
        counts = jobs.setdefault(queue, {"pending": 0, "running": 0, "succeeded": 0,
                                         "failed": 0, "cancelled": 0})
        counts[state] = counts.get(state, 0) + count
    unsent, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.sent_at.is_(None))).one()
    age = None if oldest is None else max(0.0, (db_now(session) - oldest).total_seconds())
    nodes = dict(session.execute(select(NodeState.state, func.count())
                                 .group_by(NodeState.state)).all())
    instances = dict(session.execute(select(Instance.state, func.count())
                                     .group_by(Instance.state)).all())
    return {"jobs": jobs, "outbox": {"unsent": unsent, "oldest_unsent_age_sec": age},
            "nodes": nodes, "instances": instances}
