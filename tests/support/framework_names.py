"""Names a framework reads where vulture cannot see it: vulture's whitelist for this project.

A vulture whitelist is a module that uses the names. Made with ``vulture --make-whitelist``
and reviewed by hand: only names a framework reads are here, grouped by who reads them, each
written as the real object so that importing this module fails when one is gone
(tests/unit/house/test_dead_code.py imports it). Decorated functions and hook names are in
``[tool.vulture]`` of pyproject.toml instead. Never add code nothing reads: delete it.
"""

import reprlib
import sqlite3

from celery.events.receiver import EventReceiver
from redis.lock import Lock

import celeryconfig
from collector import wire
from collector.models import (
    Alarm,
    BackupObject,
    DcNetwork,
    Image,
    InstanceMonitorAttr,
    IpHandle,
    IpPool,
    IpPoolDcNetwork,
    LoadBalancer,
    LoadBalancerInbound,
    LoadBalancerTarget,
    LocalVolume,
    Network,
    NetworkRoute,
    NetworkService,
    NetworkVifIpLease,
    ResourceLabel,
    SshKeyPair,
    StorageNode,
    Tag,
    Volume,
    VolumeSnapshot,
)
from collector.services.api.requests import InstanceRequest, VifParams
from tasks.app import app
from tasks.base import CollectorTask, MaskedRequest, queue_checked_strategy
from tasks.beat_scheduler import CollectorScheduler
from workers.agent.broker_watch import BrokerWatch
from workers.agent.signing import SignedSender
from workers.agent.transport import RedisTransport, SentinelTransport

# --- Celery reads its settings from celeryconfig by name (app.config_from_object) ----------
celeryconfig.broker_transport
celeryconfig.task_serializer
celeryconfig.result_serializer
celeryconfig.event_serializer
celeryconfig.accept_content
celeryconfig.result_accept_content
celeryconfig.task_acks_late
celeryconfig.task_reject_on_worker_lost
celeryconfig.worker_prefetch_multiplier
celeryconfig.worker_cancel_long_running_tasks_on_connection_loss
celeryconfig.task_track_started
celeryconfig.result_extended
celeryconfig.broker_connection_retry_on_startup
celeryconfig.broker_connection_max_retries
celeryconfig.result_backend_transport_options
celeryconfig.redis_socket_keepalive
celeryconfig.broker_use_ssl
celeryconfig.redis_backend_use_ssl
celeryconfig.task_create_missing_queues
celeryconfig.task_default_queue
celeryconfig.task_routes
celeryconfig.worker_send_task_events
celeryconfig.task_send_sent_event
celeryconfig.worker_hijack_root_logger
celeryconfig.timezone
celeryconfig.enable_utc
# celery-redbeat reads its settings from the same configuration.
celeryconfig.beat_scheduler
celeryconfig.redbeat_redis_url
celeryconfig.redbeat_redis_options
celeryconfig.redbeat_redis_use_ssl
celeryconfig.redbeat_key_prefix
celeryconfig.redbeat_lock_key
celeryconfig.redbeat_lock_timeout
celeryconfig.beat_max_loop_interval
# beat builds the scheduler named in beat_scheduler and calls its tick(); a redis-py Lock
# renews itself with its lua_extend script (redbeat's sets the TTL instead of adding to it).
CollectorScheduler
CollectorScheduler.tick
Lock.lua_extend

# --- Celery: the worker imports the task modules of ``include``; the task class, its request
# and strategy are named by string (task_cls="tasks.base:CollectorTask", Request, Strategy);
# the worker's events and logs show a request's _argsrepr/_kwargsrepr ------------------------
app.conf.include
CollectorTask
CollectorTask.Strategy
MaskedRequest
MaskedRequest._argsrepr
MaskedRequest._kwargsrepr
queue_checked_strategy
# An event receiver's capture loop stops when should_stop is set (tests/integration).
EventReceiver.should_stop
# Celery's send_task calls its AMQP's send_task_message: sign_messages mixes this one in.
SignedSender.send_task_message
# A consumer step: Celery reads what it requires and calls shutdown.
BrokerWatch.requires
BrokerWatch.shutdown

# --- kombu: the transports are named by string (workers.agent.transport.TRANSPORTS) -------
RedisTransport.Channel
SentinelTransport.Channel

# --- SQLAlchemy: the schema. Every column is compared with the migrations
# (tests/unit/db/test_schema.py) and read by documents through the mapper (column_values) ---
Alarm.evaluation_periods
Alarm.notification_periods
Alarm.state_timestamp
Alarm.ok_actions
Alarm.alarm_actions
Alarm.insufficient_data_actions
Alarm.last_evaluated_at
BackupObject.allocation_size
BackupObject.container_format
BackupObject.purged_at
Image.is_public
Image.file_format
Image.root_device
Image.is_cacheable
Image.instance_model_name
Image.parent_image_id
InstanceMonitorAttr.recipients
SshKeyPair.finger_print
SshKeyPair.public_key
ResourceLabel.value_type
ResourceLabel.blob_value
LoadBalancer.private_key
LoadBalancer.public_key
LoadBalancer.allow_list
LoadBalancerTarget.load_balancer_id
LoadBalancerInbound.load_balancer_id
DcNetwork.vlan_lease_id
DcNetwork.offering_network_modes
DcNetwork.allow_new_networks
Network.metric
Network.gateway_network_id
Network.bandwidth
Network.editable
NetworkVifIpLease.ip_handle_id
IpPool.expire_initial
IpPool.expire_released
IpPoolDcNetwork
IpPoolDcNetwork.ip_pool_id
IpHandle.ip_pool_id
NetworkRoute.route_type
NetworkRoute.release_outer_vif
NetworkRoute.release_inner_vif
NetworkService.incoming_port
NetworkService.outgoing_port
Tag.attributes
StorageNode.mount_point
Volume.attached_at
Volume.detached_at
LocalVolume.mount_label
VolumeSnapshot.origin_volume_id
# The sqlite3 driver reads isolation_level (collector.db.engine turns its own BEGIN off).
sqlite3.Connection.isolation_level

# --- pydantic: request fields, accepted and kept through model_dump -------------------------
InstanceRequest.model_construct().network_scheduler
VifParams.model_construct().bandwidth

# --- reprlib: Repr.repr reads its limits (collector.redaction) -----------------------------
reprlib.Repr().maxlevel
reprlib.Repr().maxdict
reprlib.Repr().maxlist
reprlib.Repr().maxtuple
reprlib.Repr().maxstring
reprlib.Repr().maxother
reprlib.Repr().maxlong

# --- collector.wire: a node endpoint's jobs are enumerated with vars() (wire.job_names) ---
wire.HvaJob.ATTACH
wire.HvaJob.DETACH
wire.HvaJob.REBOOT
wire.HvaJob.POWEROFF
wire.HvaJob.SOFT_POWEROFF
wire.HvaJob.POWERON
wire.LocalStoreJob.DEPLOY_VOLUME_AND_ATTACH
wire.LocalStoreJob.BACKUP_VOLUME
wire.LocalStoreJob.BACKUP_IMAGE
wire.StaJob.BACKUP_VOLUME
wire.StaJob.BACKUP_IMAGE
wire.StaJob.CREATE_SNAPSHOT
wire.StaJob.DELETE_SNAPSHOT
wire.LogAlarmJob.UPDATE_ALARM
wire.LogAlarmJob.DELETE_ALARM
