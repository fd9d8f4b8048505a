"""Reactions to ``hva/instance_terminated`` (the original's EventHook), idempotent.

For a terminated instance: its vifs leave every load balancer (per-target security
groups removed, targets soft-deleted) and each affected balancer's new configuration is
sent to ``loadbalancer.<lb instance id>``; its log alarms are soft-deleted and the host's
``log-alarm-registry.<node_id>`` is told to ``delete_alarms``. All after one commit.

Fixed from the original: an instance that was only *stopped* (hva emits the same event)
keeps its balancer registrations and alarms; one vif without a per-target group no
longer aborts the others; an unknown instance is logged, not an error storm.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from collector import wire
from collector.db import EAGER_CHUNK, outbox
from collector.documents.resources import direct_address
from collector.models import (
    LOG_METRICS,
    Alarm,
    Instance,
    LoadBalancer,
    LoadBalancerTarget,
    NetworkVif,
    NetworkVifSecurityGroup,
    ResourceLabel,
    SecurityGroup,
)
from collector.timeutil import utcnow

log = logging.getLogger(__name__)


def on_instance_terminated(session: Session, args: list, sender: str) -> dict[str, Any]:
    if not args or not isinstance(args[0], str):
        log.error("hva/instance_terminated from %s without an instance id: %r", sender, args)
        return {}
    inst = Instance.find_cuuid(session, args[0]) if args[0].startswith("i-") else None
    if inst is None:
        log.warning("hva/instance_terminated for unknown instance %r (from %s)", args[0], sender)
        return {}
    if inst.terminated_at is None:
        log.info("%s is %s, not terminated: load balancers and alarms kept",
                 inst.canonical_uuid, inst.state)
        return {"skipped": inst.state}
    balancers = unregister_from_load_balancers(session, inst)
    alarms = delete_log_alarms(session, inst)
    return {"load_balancers": balancers, "log_alarms": alarms}


def unregister_from_load_balancers(session: Session, inst: Instance) -> list[str]:
    vif_ids = [v.canonical_uuid for v in inst.network_vifs]
    if not vif_ids:
        return []
    # Locked: a repeated event handled at the same time waits and then finds no target.
    targets = list(session.scalars(select(LoadBalancerTarget).where(
        LoadBalancerTarget.network_vif_id.in_(vif_ids), LoadBalancerTarget.deleted_at.is_(None))
        .order_by(LoadBalancerTarget.id).with_for_update()
        .execution_options(populate_existing=True)))
    changed: dict[int, LoadBalancer] = {}
    now = utcnow()
    for target in targets:
        lb = target.load_balancer
        _remove_target_security_group(session, lb, target.network_vif_id)
        target.deleted_at, target.is_deleted = now, target.id
        changed[lb.id] = lb
    session.flush()
    for lb in changed.values():
        if lb.instance is not None:
            queue = wire.node_queue(wire.LOADBALANCER, lb.instance.canonical_uuid)
            outbox.tasks.send(session, queue, wire.LoadBalancerTask.UPDATE_CONFIG,
                              reload_config(session, lb))
    return [lb.canonical_uuid for lb in changed.values()]


def _remove_target_security_group(session: Session, lb: LoadBalancer, vif_id: str) -> None:
    label = session.scalars(select(ResourceLabel).where(
        ResourceLabel.name == lb.label, ResourceLabel.string_value == vif_id)).first()
    if label is None:
        return  # registered without a per-target group: nothing to remove
    group = SecurityGroup.find_cuuid(session, label.resource_uuid) \
        if label.resource_uuid.startswith("sg-") else None
    session.delete(label)
    if group is not None:
        session.query(NetworkVifSecurityGroup).filter_by(security_group_id=group.id).delete()
        session.delete(group)


def reload_config(session: Session, lb: LoadBalancer) -> dict[str, Any]:
    """The balancer's haproxy configuration message (servers from its alive targets)."""
    targets = [t for t in lb.targets if t.deleted_at is None]
    vifs = {v.canonical_uuid: v for v in session.scalars(
        select(NetworkVif).where(NetworkVif.uuid.in_(
            [t.network_vif_id.split("-", 1)[1] for t in targets]))
        .options(selectinload(NetworkVif.ip_leases, chunksize=EAGER_CHUNK)))}
    inbounds = [i for i in lb.inbounds if i.deleted_at is None]
    secure = [i for i in inbounds if i.protocol in ("https", "ssl")]
    return {
        "name": "reload:haproxy",
        "ports": [i.port for i in inbounds], "protocols": [i.protocol for i in inbounds],
        "secure_port": secure[0].port if secure else None,
        "secure_protocol": secure[0].protocol if secure else None,
        "instance_protocol": lb.instance_protocol, "instance_port": lb.instance_port,
        "balance_algorithm": lb.balance_algorithm, "cookie_name": lb.cookie_name,
        "httpchk_path": lb.httpchk_path,
        "servers": [{"ipv4": direct_address(vifs[t.network_vif_id]) if t.network_vif_id in vifs
                     else None, "backup": t.fallback_mode == "on"} for t in targets],
        "queue_name": (wire.node_queue(wire.LOADBALANCER, lb.instance.canonical_uuid)
                       if lb.instance else None),
    }


def delete_log_alarms(session: Session, inst: Instance) -> list[str]:
    alarms = list(session.scalars(select(Alarm).where(
        Alarm.resource_id == inst.canonical_uuid, Alarm.metric_name.in_(LOG_METRICS),
        Alarm.deleted_at.is_(None)).order_by(Alarm.id).with_for_update()
        .execution_options(populate_existing=True)))
    for alarm in alarms:
        alarm.soft_delete()
    ids = [a.canonical_uuid for a in alarms]
    if ids and inst.host_node is not None and inst.host_node.node_id:
        queue = wire.node_queue(wire.LOG_ALARM_REGISTRY, inst.host_node.node_id)
        outbox.jobs.submit(session, queue, wire.LogAlarmJob.DELETE_ALARMS, ids,
                           resource_id=inst.canonical_uuid)
    return ids
