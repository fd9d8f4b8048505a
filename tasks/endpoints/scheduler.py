"""``scheduler.*`` tasks: the placement jobs (``schedule_instance``, ``schedule_start_instance``,
``schedule_volume``, ``evacuate_from``; ``schedule_instances`` places a list of new
instances in one transaction and answers their outcomes, failed ones included, without
failing; ``schedule_launch`` places a bulk launch, at least its ``min_count`` or none, and
fails when none), each one transaction around a handler of
``collector.scheduling.handlers`` / ``collector.scheduling.evacuation``; and the scheduler
role's event handler: ``node_collector/offline`` evacuates the host once per outage when
the configuration says ``evacuate_on_node_offline = true`` (queue ``events.scheduler``).

A handler applies a failed placement itself (a new instance ``terminated``, a start back to
``stopped``, a volume ``deleted``, the reason recorded) and returns it, so that state is
committed. Only then does the task fail, with the typed error of the outcome
(``InsufficientCapacity``, ``NoMatchingHostNode``, ``OutOfIpRange``, ...), and a caller of
the task sees that error. A job of the ledger ends in the transaction of its work (the
scheduler's queue is one of ``outbox.COLLECTOR_JOB_QUEUES``): ``finished/success``, or ``finished/fail`` with the outcome's
reason, with no callback in between. Outcomes ``placed`` and ``noop`` (a repeated or late
job) answer the outcome document.

A job that meets ``TransientError`` (the database unreachable, a pool timeout, deadlocks
beyond the in-place retries) changed nothing and is retried by Celery with backoff for
COLLECTOR_JOB_RETRY_FOR seconds (``tasks.registry.RetryTransient``); its ledger row stays
pending meanwhile. Only then does it fail, and the maintenance pass
(``collector.scheduling.redrive``) places the request again. A call of these tasks as an
RPC (not a job of the ledger) gets the TransientError at once.
"""

from __future__ import annotations

import re
from typing import Any

from collector import errors, wire
from collector.scheduling import batch, evacuation, handlers
from tasks.event_bus import subscribe
from tasks.registry import Endpoint, RetryTransient

_DYNAMIC: dict[str, type[errors.CollectorError]] = {}


def placement_error(error_type: object, message: object) -> errors.CollectorError:
    """The typed error named ``error_type`` (a new PlacementError subclass of that name when
    ``collector.errors`` has none, so the name still reaches the ledger and the caller)."""
    name = error_type if isinstance(error_type, str) else ""
    cls = errors.ALL_ERRORS.get(name)
    if cls is None:
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]{0,63}", name):
            return errors.PlacementError(f"{name or 'placement failed'}: {message}")
        cls = _DYNAMIC.setdefault(name, type(name, (errors.PlacementError,), {}))
    return cls("" if message is None else str(message))


def fail_on_failed_outcome(outcome: Any) -> Any:
    """After the commit: a ``failed`` outcome becomes the task's typed error."""
    if isinstance(outcome, dict) and outcome.get("outcome") == "failed":
        raise placement_error(outcome.get("error_type"), outcome.get("message"))
    return outcome


# The jobs the API submits, by the names it submits them under.
endpoint = Endpoint(wire.SCHEDULER, on_committed=fail_on_failed_outcome,
                    retry=RetryTransient(jobs_only=True)).writes(**{
    wire.SchedulerJob.SCHEDULE_INSTANCE: handlers.schedule_instance,
    wire.SchedulerJob.SCHEDULE_START_INSTANCE: handlers.schedule_start_instance,
    wire.SchedulerJob.SCHEDULE_VOLUME: handlers.schedule_volume,
    wire.SchedulerJob.SCHEDULE_INSTANCES: batch.schedule_instances,
    wire.SchedulerJob.SCHEDULE_LAUNCH: batch.schedule_launch,
    wire.SchedulerJob.EVACUATE_FROM: evacuation.evacuate_from,
})

subscribe(wire.SCHEDULER, wire.NodeEvent.OFFLINE)(evacuation.on_node_offline)
