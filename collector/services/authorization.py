"""Who may call what: the one table of agent rights, and the check of a call against it.

A message's sender is proven by its signature (``collector.signing``, checked by the
task layer): a node (``hva.demo1``), ``collector`` (the Collector's own roles) or
``operator`` (the CLI, Flower, an API front end). The Collector and the operator may call
every task. A node may call only the tasks in ``RIGHTS`` open to its kind, and only on what
belongs to it: the ``owns`` of each entry names which argument must be its own, checked in
the call's own transaction (``check``) before the domain function runs. Everything not in
the table (``api.*``, ``scheduler.*``, ``maintenance.*``, the event handlers, ``*.list``)
is for the Collector and the operator only.

The table is data: ``docs/reference.md`` is generated from it (``rights_table``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from collector import wire
from collector.errors import CollectorError, Unauthorized
from collector.services.ownership import (
    host_node_nodes,
    instance_nodes,
    job_nodes,
    node_itself,
    queue_node,
    snapshot_nodes,
    vnic_nodes,
    volume_nodes,
)
from collector.signing import COLLECTOR, HVA, NATBOX, NODE_KINDS, OPERATOR, STA, node_kind

log = logging.getLogger(__name__)

EVERY_NODE = NODE_KINDS


@dataclass(frozen=True)
class Caller:
    """The proven sender of a call; None (a call made in this process) is trusted."""

    principal: str

    @property
    def kind(self) -> str | None:
        """``hva`` / ``sta`` / ``natbox`` for a node, None for the Collector and operator."""
        return node_kind(self.principal)

    @property
    def is_node(self) -> bool:
        return self.kind is not None

    @property
    def trusted(self) -> bool:
        return self.principal in (COLLECTOR, OPERATOR)


# (session, the id named, the caller's kind) -> the nodes it belongs to
Owner = Callable[[Session, object, str | None], set[str]]


@dataclass(frozen=True)
class Right:
    """The node kinds that may call a task, and which arguments must be their own."""

    kinds: tuple[str, ...]
    owns: str | None = None  # the argument's name; None: no ownership (shared reads)
    belongs: Owner | None = None
    why: str = ""
    also: tuple[tuple[str, Owner], ...] = ()  # more arguments that must be the caller's
    # Instead of the ownership of one argument: a rule over all of them (push_job).
    rule: Callable[[Session, str, dict[str, Any]], bool] | None = None

    def owned(self) -> tuple[tuple[str, Owner], ...]:
        """(argument, owner function) for every argument that must be the caller's."""
        first = ((self.owns, self.belongs),) if self.owns and self.belongs else ()
        return (*first, *self.also)


def _own(argument: str, belongs: Owner, *kinds: str) -> Right:
    return Right(kinds or (HVA,), argument, belongs)


def _shared(*kinds: str, why: str = "") -> Right:
    return Right(kinds, None, None, why)


def may_push_job(session: Session, caller: str, arguments: dict[str, Any]) -> bool:
    """A node pushes jobs onto its own queues; a storage agent also tells the host of an
    instance booting on one of its volumes that the volumes are ready."""
    targets = queue_node(session, arguments.get("queue"))
    if caller in targets:
        return True
    instance = arguments.get("resource_id")
    return node_kind(caller) == STA and bool(targets) and \
        arguments.get("job_name") == wire.HvaJob.WAIT_VOLUMES_AVAILABLE and \
        wire.endpoint_of(str(arguments.get("queue"))) == wire.HVA_HANDLE and \
        caller in _owners(session, instance_nodes, instance, STA) and \
        targets <= _owners(session, instance_nodes, instance, HVA)


_hva, _sta, _nat = (wire.HVA_COLLECTOR, wire.STA_COLLECTOR, wire.NATBOX_COLLECTOR)
_job = wire.JOBQUEUE_PROXY
SHARED_NETWORK = "network, security group and host documents every host needs"

# Task name -> who of the nodes may call it. Not listed: Collector and operator only.
RIGHTS: dict[str, Right] = {
    # Hypervisor agents: their own instances, vnics, host; shared network documents.
    wire.task(_hva, "get_instance"): _own("instance_id", instance_nodes, HVA, STA),
    wire.task(_hva, "update_instance"): _own("instance_id", instance_nodes),
    wire.task(_hva, "finalize_instance"): _own("instance_id", instance_nodes),
    # The instance moves to the caller, and only from where it runs or is migrating to it.
    wire.task(_hva, "switch_instance_host_node"): Right(
        (HVA,), "instance_uuid", instance_nodes, also=(("dest_node_id", node_itself),)),
    wire.task(_hva, "prepare_host_node_vnet"): _own("host_node_uuid", host_node_nodes),
    wire.task(_hva, "get_nic"): _own("nic_uuid", vnic_nodes),
    wire.task(_hva, "get_security_groups_of_vnic"): _own("vnic_uuid", vnic_nodes),
    wire.task(_hva, "get_netfilter_vnic"): _own("vnic_id", vnic_nodes),
    wire.task(_hva, "get_netfilter_vnic_with_node_id"): _own("vnic_id", vnic_nodes),
    wire.task(_hva, "get_instance_monitor_data"): _own("node_id", node_itself),
    wire.task(_hva, "get_resource_monitor_data"): _own("node_id", node_itself),
    wire.task(_hva, "get_resource_monitor_ids"): _own("node_id", node_itself),
    wire.task(_hva, "get_netfilter_data"): _own("node_id", node_itself),
    **{wire.task(_hva, method): _shared(HVA, why=SHARED_NETWORK) for method in (
        "get_network", "get_networks", "get_host_nodes_index", "get_host_node",
        "get_dhcp_conf", "get_referencers_of_security_group", "get_rules_of_security_group",
        "get_referencees_of_security_group", "get_netfilter_security_group",
        "get_netfilter_network", "get_external_monitor_target_host_nodes")},
    wire.task(_hva, "update_image"): _shared(HVA, STA, why="images have no node: any agent "
                                             "backing one up reports it"),
    # Storage agents: volumes and snapshots on their node (a host's local volumes too).
    wire.task(wire.STA_COLLECTOR, "get_available_volumes"): _own("sta_node_id", node_itself,
                                                                 STA),
    wire.task(_sta, "get_volume"): _own("volume_id", volume_nodes, STA, HVA),
    wire.task(_sta, "update_volume"): _own("volume_id", volume_nodes, STA, HVA),
    wire.task(_sta, "get_snapshot"): _own("snapshot_id", snapshot_nodes, STA),
    wire.task(_sta, "update_snapshot"): _own("snapshot_id", snapshot_nodes, STA),
    wire.task(_sta, "register_backup_object_transfer"): _own("node_id", node_itself, STA, HVA),
    wire.task(_sta, "register_image_transfer"): _own("node_id", node_itself, STA, HVA),
    **{wire.task(_sta, method): _shared(STA, HVA, why="backup objects and images belong to a "
                                        "backup storage, not to a node") for method in (
        "get_backup_object", "update_backup_object", "get_image", "update_image",
        "post_process_backup_image")},
    # NAT boxes: route reads only (the data model binds no network to a NAT box).
    wire.task(_nat, "get_network_route"): _shared(NATBOX, why="read only"),
    wire.task(_nat, "get_alive_network_routes"): _shared(NATBOX, why="read only"),
    # Every agent: its own heartbeat, its own jobs, alarms and samples of its kind.
    wire.task(wire.NODE_COLLECTOR, "notify"): _own("node_id", node_itself, *EVERY_NODE),
    wire.task(wire.ALARM_COLLECTOR, "get_log_alarms"): _own("node_id", node_itself, HVA),
    **{wire.task(wire.ALARM_COLLECTOR, method): _shared(HVA, why="alarm documents") for method
       in ("get_alarm", "get_alarms", "get_resource_alarms", "update_alarm")},
    wire.task(wire.RESOURCE_COLLECTOR, "resource_store"): _shared(HVA, why="resource samples"),
    **{wire.task(_job, method): _own("job_id", job_nodes, *EVERY_NODE) for method in (
        "running", "heartbeat", "finish_success", "finish_fail", "cancel", "find",
        wire.LedgerCallback.JOB_SUCCEEDED, wire.LedgerCallback.JOB_FAILED)},
    wire.task(_job, "push_job"): Right(EVERY_NODE, why="onto its own queues; a storage agent "
                                       "also `wait_volumes_available` to the host booting an "
                                       "instance on its volume", rule=may_push_job),
    wire.task(_job, "submit"): _own("queue_name", queue_node, *EVERY_NODE),
    wire.task(_job, "pop"): _own("queue_name", queue_node, *EVERY_NODE),
    **{wire.task(endpoint, wire.PING): _shared(*EVERY_NODE, why="health check")
       for endpoint in (_hva, _sta, _nat, wire.NODE_COLLECTOR, wire.ALARM_COLLECTOR,
                        wire.RESOURCE_COLLECTOR, _job)},
    wire.EVENT_DELIVER: _shared(*EVERY_NODE, why="only events of its kind, as itself "
                                "(``may_publish``)"),
}

# Events a node of each kind may publish (as itself: the sender is its node id).
EVENTS_BY_KIND: dict[str, tuple[str, ...]] = {
    HVA: tuple(value for name, value in vars(wire.HvaEvent).items() if name.isupper()),
    STA: (), NATBOX: (),
}


def may_call(caller: Caller | None, task: str) -> bool:
    """Whether ``caller`` may call ``task`` at all (before any argument is looked at)."""
    if caller is None or caller.trusted:
        return True
    right = RIGHTS.get(task)
    return right is not None and caller.kind in right.kinds


def refuse(caller: Caller, what: str) -> Unauthorized:
    """The refusal of ``what`` to ``caller``, logged with the claimed sender."""
    log.warning("unauthorized: %s %s", caller.principal, what)
    return Unauthorized(f"{caller.principal} may not {what}")


def _arguments(fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by name (the function's parameters after the session)."""
    names = list(inspect.signature(fn).parameters)[1:]
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _owners(session: Session, belongs: Owner, value: object, kind: str | None) -> set[str]:
    try:
        return belongs(session, value, kind)
    except CollectorError:  # an unknown or malformed id: nobody's
        return set()


def check(session: Session, caller: Caller | None, task: str, fn: Callable[..., Any],
          args: tuple, kwargs: dict) -> None:
    """Unauthorized unless ``caller`` may call ``task`` with these arguments (the
    arguments were already checked for shape; an unknown id raises its own error)."""
    if caller is None or caller.trusted:
        return
    if not may_call(caller, task):
        raise refuse(caller, f"call {task}")
    right = RIGHTS[task]
    arguments = _arguments(fn, args, kwargs)
    if right.rule is not None and not right.rule(session, caller.principal, arguments):
        raise refuse(caller, f"call {task} with these arguments ({right.why})")
    for argument, belongs in right.owned():
        value = arguments.get(argument)
        if caller.principal not in _owners(session, belongs, value, caller.kind):
            raise refuse(caller, f"call {task} on {argument}={value!r}: not its own")


def may_publish(caller: Caller | None, event: str, sender: str) -> None:
    """Unauthorized unless ``caller`` may publish ``event`` as ``sender``."""
    if caller is None or caller.trusted:
        return
    if sender != caller.principal:
        raise refuse(caller, f"publish {event} as {sender!r}")
    if event not in EVENTS_BY_KIND.get(caller.kind or "", ()):
        raise refuse(caller, f"publish {event}")


def rights_table(tasks: Iterable[str]) -> list[tuple[str, str, str]]:
    """(task, who of the nodes, what must be theirs) for every task in ``tasks``: the
    reference document's table."""
    rows = []
    for task in sorted(tasks):
        right = RIGHTS.get(task)
        if right is None:
            rows.append((task, "Collector and operator only", ""))
            continue
        kinds = ", ".join(f"{kind} nodes" for kind in right.kinds)
        owned = " and ".join(f"`{argument}`" for argument, _ in right.owned())
        owns = f"{owned} {'are' if len(right.owned()) > 1 else 'is'} its own" if owned \
            else (right.why or "any")
        rows.append((task, kinds, owns))
    return rows
