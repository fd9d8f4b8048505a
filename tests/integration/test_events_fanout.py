"""An event reaches every subscribing role exactly once, with two workers per role."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import redis

from collector import sample_data
from collector.client import Collector
from collector.db import unit_of_work
from collector.models import Alarm, LoadBalancerTarget, SecurityGroup
from collector.services import instance_lifecycle
from tests.servers import WorkerProcess

pytestmark = pytest.mark.integration
REDIS_DB = {"sqlite": 5, "postgresql": 6}


@pytest.fixture(scope="module")
def roles(db_url, redis_server):
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    broker = f"{redis_server.url}/{REDIS_DB[backend]}"
    workers = [WorkerProcess(db_url, broker, role, ("--concurrency", "2"))
               for role in ("events", "events", "alarm-collector", "alarm-collector")]
    for w in workers:
        w.wait_ready()
    client = Collector(broker, timeout=30)
    yield {"workers": workers, "client": client, "broker": broker, "db_url": db_url}
    client.close()
    for w in workers:
        w.stop()


def _executions(workers, task: str, marker: str) -> int:
    pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded")
    return sum(1 for w in workers for line in w.log_text().splitlines()
               if pattern.search(line) and marker in line)


def test_terminated_event_is_handled_once_by_each_subscribing_role(roles):
    with unit_of_work(roles["db_url"]) as session:
        inst = sample_data.running_instance(session)
        log_alarm = sample_data.alarm(session, inst, "log")
        cpu_alarm = sample_data.alarm(session, inst, "cpu.usage")
        instance_lifecycle.finalize_instance(session, inst)
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
        log_id, cpu_id = log_alarm.id, cpu_alarm.id

    roles["client"].events.publish("hva/instance_terminated", [inst_id], sender=node)

    conn = redis.Redis.from_url(roles["broker"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with unit_of_work(roles["db_url"]) as session:
            gone = [session.get(Alarm, i).deleted_at is not None for i in (log_id, cpu_id)]
        if all(gone) and conn.llen(f"resource-alarm-registry.{node}") and \
                conn.llen(f"log-alarm-registry.{node}"):
            break
        time.sleep(0.1)
    assert all(gone), "both roles acted on the event"
    time.sleep(1.5)  # give a duplicate delivery the chance to show
    workers = roles["workers"]
    assert _executions(workers, "events.deliver", "") == 1
    # These workers are fresh (module scope): this is the only terminated event they saw.
    assert _executions(workers[:2], "events.event-hook.on_instance_terminated", "") == 1
    assert _executions(workers[2:], "events.alarm-collector.on_instance_terminated", "") == 1
    resource_jobs = [json.loads(m) for m in conn.lrange(f"resource-alarm-registry.{node}", 0, -1)]
    log_jobs = [json.loads(m) for m in conn.lrange(f"log-alarm-registry.{node}", 0, -1)]
    assert [m["headers"]["task"] for m in resource_jobs] == ["resource-alarm-registry.delete_alarms"]
    assert [m["headers"]["task"] for m in log_jobs] == ["log-alarm-registry.delete_alarms"]


def _task_args(message: dict) -> list:
    """The positional arguments of a Celery message as it waits in a Redis list."""
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body)[0]


def _queued_tasks(broker: str, queue: str, count: int = 1, timeout: float = 30) -> list[dict]:
    """The messages waiting in ``queue`` once it holds ``count`` of them."""
    conn = redis.Redis.from_url(broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and conn.llen(queue) < count:
        time.sleep(0.1)
    return [json.loads(m) for m in conn.lrange(queue, 0, -1)]


@pytest.mark.parametrize("event", ["hva/instance_turnedon", "hva/instance_started"])
def test_turned_on_or_started_event_pushes_the_alarms_to_the_registry(roles, event):
    with unit_of_work(roles["db_url"]) as session:
        inst = sample_data.running_instance(session)
        cpu = sample_data.alarm(session, inst, "cpu.usage").canonical_uuid
        sample_data.alarm(session, inst, "memory.usage", enabled=False)
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
    roles["client"].events.publish(event, [inst_id], sender=node)
    [message] = _queued_tasks(roles["broker"], f"resource-alarm-registry.{node}")
    assert message["headers"]["task"] == "resource-alarm-registry.update_alarms"
    assert message["headers"]["argsrepr"] == repr([[cpu]])


def test_turned_off_event_resets_resource_alarms_and_clears_the_registry(roles):
    with unit_of_work(roles["db_url"]) as session:
        inst = sample_data.running_instance(session)
        cpu = sample_data.alarm(session, inst, "cpu.usage", state="alarm")
        log_alarm = sample_data.alarm(session, inst, "log", state="alarm")
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
        cpu_pk, cpu_id, log_pk = cpu.id, cpu.canonical_uuid, log_alarm.id
    roles["client"].events.publish("hva/instance_turnedoff", [inst_id], sender=node)
    [message] = _queued_tasks(roles["broker"], f"resource-alarm-registry.{node}")
    assert message["headers"]["task"] == "resource-alarm-registry.delete_alarms"
    assert message["headers"]["argsrepr"] == repr([[cpu_id]])
    with unit_of_work(roles["db_url"]) as session:
        # The job is written in the same transaction as the reset: both are visible.
        assert session.get(Alarm, cpu_pk).state == "init"
        assert session.get(Alarm, log_pk).state == "alarm"  # not a resource alarm


def test_terminated_event_takes_the_instance_out_of_its_load_balancer(roles):
    with unit_of_work(roles["db_url"]) as session:
        pair = sample_data.load_balanced_pair(session, cidr="10.77.0.0/24")
        instance_lifecycle.finalize_instance(session, pair.backend)
        inst_id, node = pair.backend.canonical_uuid, pair.backend.host_node.node_id
        lb_id, lb_queue = pair.lb.id, f"loadbalancer.{pair.lb_vm.canonical_uuid}"
        group_pk = pair.group.id
    roles["client"].events.publish("hva/instance_terminated", [inst_id], sender=node)
    [message] = _queued_tasks(roles["broker"], lb_queue)
    assert message["headers"]["task"] == "loadbalancer.update_config"
    config = _task_args(message)[0]
    assert config["servers"] == [{"ipv4": "10.77.0.21", "backup": True}]
    with unit_of_work(roles["db_url"]) as session:
        targets = session.query(LoadBalancerTarget).filter_by(load_balancer_id=lb_id).all()
        assert [t.fallback_mode for t in targets if t.deleted_at is None] == ["on"]
        assert session.get(SecurityGroup, group_pk) is None
