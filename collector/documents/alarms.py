"""Alarm documents from columns (the reads of ``alarm-collector``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from collector.db.compiled import Batch, Query, Shape, fetch
from collector.errors import UnknownNodeID
from collector.models import LOG_METRICS, RESOURCE_METRICS, Alarm, HostNode, Instance

ALARM = Shape(Alarm)
_ALARMS, _HOSTS, _INSTANCES = Alarm.__table__, HostNode.__table__, Instance.__table__
_ALIVE = _ALARMS.c.deleted_at.is_(None)


def _select(*where: Any) -> Query:
    return Query(select(*ALARM.columns).where(*where), order_by=(_ALARMS.c.id,))


_BY_UUID = _select(_ALARMS.c.uuid == bindparam("raw"))
_BY_UUIDS = _select(_ALARMS.c.uuid.in_(bindparam("raws", expanding=True)))
_OF_RESOURCES = _select(_ALARMS.c.resource_id.in_(bindparam("resource_ids", expanding=True)),
                        _ALARMS.c.metric_name.in_(RESOURCE_METRICS), _ALIVE)
_HOST = Query(select(_HOSTS.c.id).where(_HOSTS.c.node_id == bindparam("node_id")))
_LOG_OF_HOST = _select(
    _ALARMS.c.resource_id.in_(
        select(f"{Instance.prefix}-" + _INSTANCES.c.uuid)
        .join(_HOSTS, _HOSTS.c.id == _INSTANCES.c.host_node_id)
        .where(_HOSTS.c.node_id == bindparam("node_id"))),
    _ALARMS.c.metric_name.in_(LOG_METRICS), _ALIVE)


_LOG_ALARMS = Batch(_HOST, _LOG_OF_HOST)


def alarm_by_uuid(session: Session, raw: str) -> dict[str, Any] | None:
    [rows] = fetch(session, (_BY_UUID, {"raw": raw}))
    return ALARM.document(rows[0]) if rows else None


def alarms_by_uuids(session: Session, raws: list[str]) -> list[dict[str, Any]]:
    [rows] = fetch(session, (_BY_UUIDS, {"raws": raws}))
    return [ALARM.document(row) for row in rows]


def resource_alarms(session: Session, resource_ids: list[str]) -> list[dict[str, Any]]:
    """Alive cpu/disk/memory alarms of those resources, by id."""
    [rows] = fetch(session, (_OF_RESOURCES, {"resource_ids": resource_ids}))
    return [ALARM.document(row) for row in rows]


def log_alarms_of_host(session: Session, node_id: str) -> list[dict[str, Any]]:
    """Alive log alarms of the instances on the host (UnknownNodeID when there is none)."""
    params = {"node_id": node_id}
    host, rows = _LOG_ALARMS.fetch(session, params)
    if not host:
        raise UnknownNodeID(f"unknown host node with node id {node_id!r}")
    return [ALARM.document(row) for row in rows]
