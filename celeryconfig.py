"""Celery settings for every Collector process (workers, beat, the CLI's client).

JSON only: pickle is neither sent nor accepted. Tasks are acknowledged late and
requeued when their worker dies (every task body is one transaction and idempotent).
"""

from __future__ import annotations

from datetime import timedelta

from kombu import Queue

from collector import wire
from collector.config import (
    load_settings,
    redbeat_settings,
    redis_transport_options,
    ssl_options_for,
)
from tasks.routing import ALL, ROLE_QUEUES, route_task
from workers.agent.client import EVENTS_QUEUE as events_queue
from workers.agent.client import broker_transport_for

_settings = load_settings()

broker_url = _settings.broker_url or "redis://127.0.0.1:6379/0"
result_backend = _settings.result_backend or broker_url
# kombu's Redis transports with one fix: a worker survives a broker restart (workers.agent.transport).
broker_transport = broker_transport_for(broker_url)

task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
task_track_started = False
result_expires = _settings.result_expires
result_extended = False

broker_connection_retry_on_startup = True
broker_connection_max_retries = None
# Visibility timeout, per kind of work. Redis keeps a delivered, unacknowledged message in
# an "unacked" hash, and any consumer of that hash puts back every entry older than its own
# visibility timeout. The Collector's work is short (a transaction), so its timeout is short
# (COLLECTOR_VISIBILITY_TIMEOUT, 60 s) and a message a killed worker held is served again
# within it (restore checked every 5 s); RPC messages expire with their call (the client
# caps an expiry at this timeout), so a restored call is dropped as expired, never run
# twice. The Collector keeps its own hash: its short timeout never restores an agent's
# long-running job (agents use one hash per node, timed from their longest job).
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout,
    "unacked_key": "collector.unacked",
    "unacked_index_key": "collector.unacked_index",
    "unacked_mutex_key": "collector.unacked_mutex",
    "unacked_mutex_expire": 30,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "socket_keepalive": True,
    "health_check_interval": 25,
    # A Sentinel list: the master's name (COLLECTOR_REDIS_MASTER_NAME), the sentinels' password.
    **redis_transport_options(_settings, broker_url),
}
result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout,
                                    **redis_transport_options(_settings, result_backend)}
# TLS (rediss://): the server's certificate verified against COLLECTOR_REDIS_CA_FILE.
broker_use_ssl = ssl_options_for(_settings, broker_url)
redis_backend_use_ssl = ssl_options_for(_settings, result_backend)
redis_socket_keepalive = True

task_create_missing_queues = True
task_default_queue = wire.DEFAULT_QUEUE
# Every queue of every role; the events queue is bound to the events exchange.
task_queues = [events_queue if name == wire.EVENTS else Queue(name) for name in ROLE_QUEUES[ALL]]
task_routes = (route_task,)

# Task events (received, started, succeeded: three publishes per task, 1.5 ms of CPU per
# placement in all) only while someone watches: Flower turns them on at its start and
# every few seconds after (its enable_events), `celery control enable_events` does too.
worker_send_task_events = False
task_send_sent_event = False
worker_hijack_root_logger = False

timezone = "UTC"
enable_utc = True


# One beat per installation: the schedule and a lock live in Redis (celery-redbeat). A
# second beat started by mistake waits on the lock; when the holder dies, it takes over
# once the lock expires (the holder renews it every loop, at most every 5 s). Ours survives
# Redis restarts and failovers (tasks.beat_scheduler).
beat_scheduler = "tasks.beat_scheduler:CollectorScheduler"
# Its Redis is the broker's: a Sentinel list's master, or TLS as the broker's.
_redbeat = redbeat_settings(_settings, broker_url)
redbeat_redis_url = _redbeat["redbeat_redis_url"]
redbeat_redis_options = _redbeat["redbeat_redis_options"]
redbeat_redis_use_ssl = _redbeat["redbeat_redis_use_ssl"]
redbeat_key_prefix = "collector:beat:"
redbeat_lock_key = "collector:beat:lock"
redbeat_lock_timeout = _settings.beat_lock_timeout
beat_max_loop_interval = min(5, max(1, _settings.beat_lock_timeout // 3))


def _every(task: str, seconds: float) -> dict:
    """A beat entry on the maintenance queue; a run not started within its period is dropped
    (the next one does the same work)."""
    return {"task": task, "schedule": timedelta(seconds=seconds),
            "options": {"queue": wire.MAINTENANCE, "expires": max(10, min(seconds, 600))}}


beat_schedule = {
    "outbox-sweep": _every(wire.Maintenance.SWEEP_OUTBOX, max(1.0, _settings.outbox_sweep_after)),
    "job-reaper": _every(wire.Maintenance.REAP_JOBS, 15),
    # Placement requests converge: lost ledger callbacks, requests no job will move.
    "placement-redrive": _every(wire.Maintenance.REDRIVE_PLACEMENTS,
                                max(1.0, _settings.redrive_every)),
    # A job no agent took is sent again within a tenth of its deadline after it.
    "jobs-redelivery": _every(wire.Maintenance.REDELIVER_JOBS,
                              max(1.0, min(15.0, _settings.job_take_deadline / 10))),
    # An event or handler message lost after it was sent is sent again within about
    # COLLECTOR_EVENT_RESEND_AFTER and a half.
    "events-resend": _every(wire.Maintenance.RESEND_EVENTS,
                            max(1.0, min(15.0, _settings.event_resend_after / 2))),
    # A held boot waits its fence timeout at most this much longer.
    "held-jobs-release": _every(wire.Maintenance.RELEASE_HELD_JOBS,
                                max(1.0, min(10.0, _settings.fence_timeout_sec / 4))),
    # Often enough that a node is seen silent within its timeout.
    "node-states-sweep": _every(wire.Maintenance.SWEEP_NODE_STATES,
                                max(1.0, min(10.0, _settings.node_timeout_sec / 2))),
    "resource-samples-retention": _every(wire.Maintenance.PURGE_RESOURCE_SAMPLES, 3600),
    "outbox-retention": _every(wire.Maintenance.PURGE_SENT_OUTBOX, 3600),
    "finished-jobs-retention": _every(wire.Maintenance.PURGE_FINISHED_JOBS, 3600),
    "ip-handles-expiry": _every(wire.Maintenance.EXPIRE_IP_HANDLES, 60),
    "windows-passwords-deletion": _every(wire.Maintenance.DELETE_EXPIRED_WINDOWS_PASSWORDS, 60),
}
