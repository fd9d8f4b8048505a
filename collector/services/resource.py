"""``resource-collector``: resource metric samples from the hypervisors' monitors.

resource_store(resource_id, data) -> None: one sample; ``data`` is the metrics mapping
    (an optional ``time`` key, ISO-8601, says when it was taken). The original only
    logged it.
get_resource_samples(resource_id, since=None, limit=100) -> [{resource_id, sampled_at,
    metrics}] newest first
purge_resource_samples(older_than_seconds) -> how many samples were deleted (maintenance
    runs it with COLLECTOR_RESOURCE_RETENTION, default 7 days)
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from collector.errors import InvalidArgument
from collector.models import ResourceSample
from collector.timeutil import parse_time, to_iso, utcnow

MAX_SAMPLE_BYTES = 64 * 1024


def resource_store(session: Session, resource_id: str, data: dict[str, Any]) -> None:
    if not resource_id or len(resource_id) > 255:
        raise InvalidArgument("resource_id must be 1 to 255 characters")
    metrics = dict(data)
    sampled_at = parse_time(metrics.pop("time", None), "time") or utcnow()
    if not metrics:
        raise InvalidArgument("data holds no metrics")
    if len(json.dumps(metrics)) > MAX_SAMPLE_BYTES:
        raise InvalidArgument(f"a sample is limited to {MAX_SAMPLE_BYTES} bytes of JSON")
    session.add(ResourceSample(resource_id=resource_id, sampled_at=sampled_at, metrics=metrics))


def get_resource_samples(session: Session, resource_id: str, since: str | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
    if not 1 <= limit <= 10000:
        raise InvalidArgument("limit must be within 1..10000")
    stmt = (select(ResourceSample).where(ResourceSample.resource_id == resource_id)
            .order_by(ResourceSample.sampled_at.desc(), ResourceSample.id.desc()).limit(limit))
    if since is not None:
        stmt = stmt.where(ResourceSample.sampled_at >= parse_time(since, "since"))
    return [{"resource_id": s.resource_id, "sampled_at": to_iso(s.sampled_at),
             "metrics": s.metrics} for s in session.scalars(stmt)]


def purge_resource_samples(session: Session, older_than_seconds: int) -> int:
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    result = session.execute(delete(ResourceSample).where(ResourceSample.sampled_at < cutoff))
    return result.rowcount or 0
