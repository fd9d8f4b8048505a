"""Every name on the wire: queues, tasks, jobs and events, each written once.

Agents, the Collector's task layer and the domain all take their names from here, so a
name can be followed from its publisher to its consumer (``grep wire.HVA_HANDLE``). The
module imports nothing: an agent may import it with the base install alone.

Names keep the original's spelling (``hva-collector``, ``hva-handle.<node_id>``,
``hva/instance_terminated``).
"""

from __future__ import annotations


def task(endpoint: str, method: str) -> str:
    """The task name ``<endpoint>.<method>`` (a job's name on a node queue is the same)."""
    return f"{endpoint}.{method}"


def node_queue(endpoint: str, node_id: str) -> str:
    """A node's queue of one agent endpoint: ``hva-handle.hva.demo1``."""
    return f"{endpoint}.{node_id}"


def endpoint_of(queue: str) -> str:
    """``hva-handle.hva.demo1`` -> ``hva-handle`` (the part before the node id)."""
    return queue.split(".", 1)[0]


# --- The Collector's endpoints: an RPC queue each, of the same name; tasks
# ``<endpoint>.<method>`` are the exposed domain functions (tasks/endpoints/).
HVA_COLLECTOR = "hva-collector"
STA_COLLECTOR = "sta-collector"
NATBOX_COLLECTOR = "natbox-collector"
ALARM_COLLECTOR = "alarm-collector"
RESOURCE_COLLECTOR = "resource-collector"
JOBQUEUE_PROXY = "jobqueue-proxy"
NODE_COLLECTOR = "node-collector"
SCHEDULER = "scheduler"
API = "api"
RPC_ENDPOINTS = (HVA_COLLECTOR, STA_COLLECTOR, NATBOX_COLLECTOR, ALARM_COLLECTOR,
                 RESOURCE_COLLECTOR, JOBQUEUE_PROXY, NODE_COLLECTOR, SCHEDULER, API)
PING = "ping"  # every endpoint answers ``<endpoint>.ping`` without touching the database

# --- The Collector's own queues.
MAINTENANCE = "maintenance"  # beat's periodic tasks
DEFAULT_QUEUE = "collector"  # Celery's default queue: nothing is sent there on purpose
EVENTS = "events"  # every published event (bound to EVENTS_EXCHANGE with "#")
EVENTS_EXCHANGE = "collector.events"  # topic exchange; routing key "<event>.<sender>"
EVENT_DELIVER = task(EVENTS, "deliver")  # the dispatcher: one copy per subscribing role
COLLECTOR_SENDER = "collector.master"  # the sender of the Collector's own events
EVENT_HOOK = "event-hook"  # the subscriber of the original's EventHook reactions


# Event subscribers: each has its durable queue ``events.<subscriber>``. A subscriber that
# is also an RPC endpoint is served by that endpoint's workers; the others by the ``events``
# role.
EVENT_SUBSCRIBERS = (ALARM_COLLECTOR, SCHEDULER, EVENT_HOOK)


def event_queue(subscriber: str) -> str:
    """A subscriber's durable queue of events: ``events.alarm-collector``."""
    return f"{EVENTS}.{subscriber}"


def event_handler_task(subscriber: str, handler: str) -> str:
    """A subscriber's handler task: ``events.alarm-collector.on_instance_terminated``."""
    return task(event_queue(subscriber), handler)


class Maintenance:
    """Beat's periodic tasks (queue ``maintenance``; each is safe to run twice)."""

    SWEEP_OUTBOX = task(MAINTENANCE, "sweep_outbox")
    REAP_JOBS = task(MAINTENANCE, "reap_jobs")
    SWEEP_NODE_STATES = task(MAINTENANCE, "sweep_node_states")
    PURGE_RESOURCE_SAMPLES = task(MAINTENANCE, "purge_resource_samples")
    PURGE_SENT_OUTBOX = task(MAINTENANCE, "purge_sent_outbox")
    PURGE_FINISHED_JOBS = task(MAINTENANCE, "purge_finished_jobs")
    EXPIRE_IP_HANDLES = task(MAINTENANCE, "expire_ip_handles")
    DELETE_EXPIRED_WINDOWS_PASSWORDS = task(MAINTENANCE, "delete_expired_windows_passwords")
    # Placement requests converge: lost ledger callbacks finished, stuck requests re-driven.
    REDRIVE_PLACEMENTS = task(MAINTENANCE, "redrive_placements")
    RELEASE_HELD_JOBS = task(MAINTENANCE, "release_held_jobs")
    # Events not dispatched, handler messages not handled: sent again (same task id).
    RESEND_EVENTS = task(MAINTENANCE, "resend_events")
    # Jobs no agent took in time sent again (end-to-end delivery through the ledger).
    REDELIVER_JOBS = task(MAINTENANCE, "redeliver_jobs")


class SchedulerJob:
    """The scheduler's jobs (queue ``scheduler``), submitted by the API through the ledger."""

    SCHEDULE_INSTANCE = "schedule_instance"
    SCHEDULE_INSTANCES = "schedule_instances"
    # A bulk launch (``api.create_instances``): its instances placed in batches, at least
    # ``min_count`` of them or none.
    SCHEDULE_LAUNCH = "schedule_launch"
    SCHEDULE_START_INSTANCE = "schedule_start_instance"
    SCHEDULE_VOLUME = "schedule_volume"
    EVACUATE_FROM = "evacuate_from"


class LedgerCallback:
    """``jobqueue-proxy`` tasks that a pushed job's ``link`` / ``link_error`` call."""

    JOB_SUCCEEDED = "job_succeeded"
    JOB_FAILED = "job_failed"


# --- Node agents' endpoints: queue ``<endpoint>.<node_id>`` (``node_queue``), and a job
# ``<endpoint>.<job>`` on it.
HVA_HANDLE = "hva-handle"
LOCAL_STORE_HANDLE = "local-store-handle"
STA_HANDLE = "sta-handle"
LOG_ALARM_REGISTRY = "log-alarm-registry"
RESOURCE_ALARM_REGISTRY = "resource-alarm-registry"
VNET_COLLECTOR = "vnet-collector"  # OpenVNet's collector (an outside service)
LOADBALANCER = "loadbalancer"  # a load balancer instance's own queue: loadbalancer.<i-...>
MIGRATION_HANDLE = "migration-handle"  # a live migration's destination host (hva agents)


class HvaJob:
    """Jobs of ``hva-handle.<node>``: the hypervisor agent."""

    RUN_LOCAL_STORE = "run_local_store"
    RUN_VOL_STORE = "run_vol_store"
    TERMINATE = "terminate"
    CLEANUP = "cleanup"
    STOP = "stop"
    ATTACH = "attach"
    DETACH = "detach"
    REBOOT = "reboot"
    POWEROFF = "poweroff"
    SOFT_POWEROFF = "soft_poweroff"
    POWERON = "poweron"
    WAIT_VOLUMES_AVAILABLE = "wait_volumes_available"


class MigrationJob:
    """Jobs of ``migration-handle.<node>``: the destination of a live migration."""

    # (instance, generation): boot the copy here, then report
    # ``hva-collector.switch_instance_host_node`` with that generation.
    RUN_MIGRATION = "run_migration"


class LocalStoreJob:
    """Jobs of ``local-store-handle.<node>``: local disks of a hypervisor."""

    RUN_LOCAL_STORE = "run_local_store"
    DEPLOY_VOLUME_AND_ATTACH = "deploy_volume_and_attach"
    DELETE_VOLUME = "delete_volume"
    BACKUP_VOLUME = "backup_volume"
    BACKUP_IMAGE = "backup_image"


class StaJob:
    """Jobs of ``sta-handle.<node>``: the storage agent."""

    CREATE_VOLUME = "create_volume"
    CREATE_VOLUME_AND_RUN_INSTANCE = "create_volume_and_run_instance"
    DELETE_VOLUME = "delete_volume"
    BACKUP_VOLUME = "backup_volume"
    BACKUP_IMAGE = "backup_image"
    CREATE_SNAPSHOT = "create_snapshot"
    DELETE_SNAPSHOT = "delete_snapshot"


class LogAlarmJob:
    """Jobs of ``log-alarm-registry.<node>``."""

    UPDATE_ALARM = "update_alarm"
    DELETE_ALARM = "delete_alarm"
    DELETE_ALARMS = "delete_alarms"


class ResourceAlarmJob:
    """Jobs of ``resource-alarm-registry.<node>``."""

    UPDATE_ALARMS = "update_alarms"
    DELETE_ALARMS = "delete_alarms"


# Node endpoint -> its jobs.
NODE_JOBS: dict[str, type] = {HVA_HANDLE: HvaJob, LOCAL_STORE_HANDLE: LocalStoreJob,
                              STA_HANDLE: StaJob, LOG_ALARM_REGISTRY: LogAlarmJob,
                              RESOURCE_ALARM_REGISTRY: ResourceAlarmJob,
                              MIGRATION_HANDLE: MigrationJob}


def job_names(endpoint: str) -> tuple[str, ...]:
    """Every job of a node endpoint: ``job_names(HVA_HANDLE)`` -> ``("run_local_store", ...)``."""
    jobs = NODE_JOBS[endpoint]
    return tuple(value for name, value in vars(jobs).items() if name.isupper())


class LoadBalancerTask:
    """Tasks of a load balancer instance's agent."""

    UPDATE_CONFIG = task(LOADBALANCER, "update_config")


class VnetTask:
    """Tasks of OpenVNet's collector."""

    SCHEDULE_VIFS = task(VNET_COLLECTOR, "schedule_vifs")


# --- Events: ``<source>/<what>`` (the original's names), published with a sender.
class HvaEvent:
    """Published by hypervisor agents."""

    INSTANCE_STARTED = "hva/instance_started"
    INSTANCE_TERMINATED = "hva/instance_terminated"
    INSTANCE_TURNEDOFF = "hva/instance_turnedoff"
    INSTANCE_TURNEDON = "hva/instance_turnedon"


class NodeEvent:
    """Published by the Collector's liveness tracking."""

    MONITORED = "node_collector/monitored"
    RESTARTED = "node_collector/restarted"
    TIMEDOUT = "node_collector/timedout"
    OFFLINE = "node_collector/offline"
    KILLED = "node_collector/killed"


class CollectorEvent:
    """Published by the Collector's placement and teardown."""

    INSTANCE_SCHEDULED = "instance.scheduled"
    NETWORK_ROUTE_DELETED = "vnet/network_route/deleted"
