"""``alarm-collector``: alarms for agents, and the alarm side of instance events.

get_alarm(alarm_id) -> alarm document (deleted alarms included)
get_alarms(alarm_ids) -> [alarm document] for those ids (deleted included: agents fetch
    alarms being deleted)
get_resource_alarms(resource_ids) -> alive cpu/disk/memory alarms of those resources (a
    single id may be given as a string; an empty list gives an empty list)
get_log_alarms(node_id) -> alive log alarms of the host's instances (any host state: the
    original refused hosts with scheduling disabled)
update_alarm(alarm_id, data) -> None; only the given keys of state, state_timestamp,
    last_evaluated_value, last_evaluated_at are written

Event handlers (role alarm-collector): instance terminated -> its resource alarms are
deleted and the host's ``resource-alarm-registry`` told to ``delete_alarms``; turned off
-> alarms reset to ``init`` and removed from the registry; started / turned on -> the
registry gets ``update_alarms`` with the alarm ids.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import ids, wire
from collector.db import outbox
from collector.documents import alarms
from collector.errors import InvalidArgument
from collector.fields import NULL, check_fields
from collector.models import ALARM_STATES, RESOURCE_METRICS, Alarm, Instance
from collector.timeutil import parse_time, utcnow

log = logging.getLogger(__name__)

UPDATABLE = {"state": (str,), "state_timestamp": (str, NULL),
             "last_evaluated_value": (int, float, NULL), "last_evaluated_at": (str, NULL)}


def get_alarm(session: Session, alarm_id: str) -> dict[str, Any]:
    doc = alarms.alarm_by_uuid(session, ids.raw_part(alarm_id, Alarm.prefix))
    if doc is None:
        raise Alarm.not_found(f"unknown id '{alarm_id}'")
    return doc


def get_alarms(session: Session, alarm_ids: list[str]) -> list[dict[str, Any]]:
    raw = [ids.raw_part(a, Alarm.prefix) for a in alarm_ids]
    return alarms.alarms_by_uuids(session, raw) if raw else []


def get_resource_alarms(session: Session, resource_ids: list[str] | str) -> list[dict[str, Any]]:
    wanted = [resource_ids] if isinstance(resource_ids, str) else resource_ids
    return alarms.resource_alarms(session, wanted) if wanted else []


def get_log_alarms(session: Session, node_id: str) -> list[dict[str, Any]]:
    return alarms.log_alarms_of_host(session, node_id)


def update_alarm(session: Session, alarm_id: str, data: dict[str, Any]) -> None:
    check_fields("alarm", data, UPDATABLE, Alarm)
    if "state" in data and data["state"] not in ALARM_STATES:
        raise InvalidArgument(f"unknown alarm state: {data['state']!r}")
    alarm = Alarm.by_cuuid(session, alarm_id, for_update=True)
    if "state" in data:
        alarm.state = data["state"]
    for key in ("state_timestamp", "last_evaluated_at"):
        if key in data:
            setattr(alarm, key, parse_time(data[key], key))
    if "last_evaluated_value" in data:
        alarm.last_evaluated_value = data["last_evaluated_value"]


def _instance_and_alarms(session: Session, args: list, event: str):
    inst_id = args[0] if args and isinstance(args[0], str) else None
    inst = Instance.find_cuuid(session, inst_id) if inst_id and inst_id.startswith("i-") else None
    if inst is None:
        log.warning("%s for unknown instance %r: ignored", event, inst_id)
        return None, []
    # Locked: a repeated event handled at the same time waits, then finds what this one
    # left (a deleted alarm is no longer selected, so its job is sent once).
    alarms = list(session.scalars(select(Alarm).where(
        Alarm.resource_id == inst.canonical_uuid, Alarm.metric_name.in_(RESOURCE_METRICS),
        Alarm.deleted_at.is_(None)).order_by(Alarm.id).with_for_update()
        .execution_options(populate_existing=True)))
    return inst, alarms


def _tell_registry(session: Session, inst: Instance, job: str, alarms: list[Alarm]) -> list[str]:
    """Send ``job(alarm ids)`` to the host's resource alarm registry; returns the ids."""
    alarm_ids = [a.canonical_uuid for a in alarms]
    if alarm_ids and inst.host_node is not None and inst.host_node.node_id:
        queue = wire.node_queue(wire.RESOURCE_ALARM_REGISTRY, inst.host_node.node_id)
        outbox.jobs.submit(session, queue, job, alarm_ids, resource_id=inst.canonical_uuid)
    return alarm_ids


def on_instance_terminated(session: Session, args: list, sender: str) -> list[str]:
    inst, alarms = _instance_and_alarms(session, args, wire.HvaEvent.INSTANCE_TERMINATED)
    if inst is None or inst.terminated_at is None:
        return []  # stopped, not terminated: alarms stay (hva emits this on stop too)
    for alarm in alarms:
        alarm.soft_delete()
    return _tell_registry(session, inst, wire.ResourceAlarmJob.DELETE_ALARMS, alarms)


def on_instance_turnedoff(session: Session, args: list, sender: str) -> list[str]:
    inst, alarms = _instance_and_alarms(session, args, wire.HvaEvent.INSTANCE_TURNEDOFF)
    if inst is None:
        return []
    now = utcnow()
    for alarm in alarms:
        alarm.state, alarm.state_timestamp = "init", now
    return _tell_registry(session, inst, wire.ResourceAlarmJob.DELETE_ALARMS, alarms)


def on_instance_turnedon(session: Session, args: list, sender: str) -> list[str]:
    inst, alarms = _instance_and_alarms(session, args, wire.HvaEvent.INSTANCE_TURNEDON)
    if inst is None:
        return []
    return _tell_registry(session, inst, wire.ResourceAlarmJob.UPDATE_ALARMS, [a for a in alarms if a.enabled])


def on_instance_started(session: Session, args: list, sender: str) -> list[str]:
    return on_instance_turnedon(session, args, sender)
