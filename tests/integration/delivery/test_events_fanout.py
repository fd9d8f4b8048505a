"""An event reaches every subscribing role exactly once, with two workers per role."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

import pytest
import redis
from sqlalchemy import select

import celeryconfig
from collector.db import unit_of_work
from collector.models import Alarm, LoadBalancerTarget, SecurityGroup
from collector.models.outbox import OutboxMessage
from collector.scheduling import teardown
from tests.support.servers import WorkerProcess
from workers.agent.client import Collector
from workers.demo.world import make

pytestmark = pytest.mark.integration
# The Collector workers' hash of delivered, unacknowledged messages.
COLLECTOR_UNACKED = celeryconfig.broker_transport_options["unacked_key"]
REDIS_DB = {"sqlite": 5, "postgresql": 6}


EVENT_QUEUES = ("events", "events.event-hook", "events.alarm-collector")


@pytest.fixture(scope="module")
def roles(db_url, redis_server):
    """Two workers per role on their own broker database (processes only: tests bring their
    own rows, and count what the workers ran from a settled start)."""
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    broker = f"{redis_server.url}/{REDIS_DB[backend]}"
    role_of = {f"{role}.{n}@fanout": role for role in ("events", "alarm-collector")
               for n in (1, 2)}
    workers = [WorkerProcess(db_url, broker, role, ("--concurrency", "2", "--hostname", name))
               for name, role in role_of.items()]
    for w in workers:
        w.wait_ready()
    client = Collector(broker, timeout=30)
    yield {"workers": workers, "role_of": role_of, "client": client, "broker": broker,
           "redis": redis.Redis.from_url(broker), "db_url": db_url}
    client.close()
    for w in workers:
        w.stop()


def _runs(roles) -> Counter | None:
    """How many times each role's workers have run each task (Celery's own per-worker counts);
    None unless every worker answered."""
    role_of = roles["role_of"]
    replies = roles["client"].app.control.inspect(destination=list(role_of), timeout=5).stats()
    if sorted(replies or {}) != sorted(role_of):
        return None
    runs: Counter = Counter()
    for name, reply in replies.items():
        runs.update({(role_of[name], task): n for task, n in reply["total"].items()})
    return runs


def _wait(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _idle(roles) -> bool:
    """Nothing waits in the event queues and no message is unacknowledged (a worker
    acknowledges a message after its task has committed and relayed what it wrote)."""
    conn = roles["redis"]
    return not any(conn.llen(q) for q in EVENT_QUEUES) and not conn.hlen(COLLECTOR_UNACKED)


def _settled_runs(roles) -> Counter:
    """The run counts once the workers have finished everything sent to them so far: idle,
    and still idle with the same counts after a round trip to every worker."""
    def settled() -> list[Counter] | None:  # a list: no counts yet is an empty Counter
        if not _idle(roles) or (runs := _runs(roles)) is None:
            return None
        return [runs] if _idle(roles) and _runs(roles) == runs else None

    return _wait(settled, "the event workers to settle")[0]


def test_terminated_event_is_handled_once_by_each_subscribing_role(roles):
    with unit_of_work(roles["db_url"]) as session:
        inst = make.running_instance(session)
        log_alarm = make.alarm(session, inst, "log")
        cpu_alarm = make.alarm(session, inst, "cpu.usage")
        teardown.finalize_instance(session, inst)
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
        log_id, cpu_id = log_alarm.id, cpu_alarm.id

    once = Counter({("events", "events.deliver"): 1,
                    ("events", "events.event-hook.on_instance_terminated"): 1,
                    ("alarm-collector", "events.alarm-collector.on_instance_terminated"): 1})
    before = _settled_runs(roles)
    roles["client"].events.publish("hva/instance_terminated", [inst_id], sender=node)
    _wait(lambda: (runs := _runs(roles)) is not None and not once - (runs - before),
          "the dispatcher and both roles to run")
    ran = _settled_runs(roles) - before  # and whatever else the event caused has run too

    # Dispatched once, and handled once by each subscribing role (however many workers it has).
    assert ran == once
    with unit_of_work(roles["db_url"]) as session:
        assert all(session.get(Alarm, i).deleted_at is not None for i in (log_id, cpu_id)), \
            "both roles acted on the event"
        handler_messages = [m for m in session.scalars(select(OutboxMessage).where(
            OutboxMessage.queue.in_(EVENT_QUEUES))) if inst_id in m.payload["args"][1]]
        assert sorted(m.name for m in handler_messages) == [
            "events.alarm-collector.on_instance_terminated",
            "events.event-hook.on_instance_terminated"]
        assert all(m.sent_at is not None for m in handler_messages)
    conn = roles["redis"]
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


def _queued_tasks(roles, queue: str) -> list[dict]:
    """The messages in ``queue`` once one has arrived and the event workers have settled."""
    conn = roles["redis"]
    _wait(lambda: conn.llen(queue), f"a message in {queue}")
    _settled_runs(roles)
    return [json.loads(m) for m in conn.lrange(queue, 0, -1)]


@pytest.mark.parametrize("event", ["hva/instance_turnedon", "hva/instance_started"])
def test_turned_on_or_started_event_pushes_the_alarms_to_the_registry(roles, event):
    with unit_of_work(roles["db_url"]) as session:
        inst = make.running_instance(session)
        cpu = make.alarm(session, inst, "cpu.usage").canonical_uuid
        make.alarm(session, inst, "memory.usage", enabled=False)
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
    roles["client"].events.publish(event, [inst_id], sender=node)
    [message] = _queued_tasks(roles, f"resource-alarm-registry.{node}")
    assert message["headers"]["task"] == "resource-alarm-registry.update_alarms"
    assert message["headers"]["argsrepr"] == repr([[cpu]])


def test_turned_off_event_resets_resource_alarms_and_clears_the_registry(roles):
    with unit_of_work(roles["db_url"]) as session:
        inst = make.running_instance(session)
        cpu = make.alarm(session, inst, "cpu.usage", state="alarm")
        log_alarm = make.alarm(session, inst, "log", state="alarm")
        inst_id, node = inst.canonical_uuid, inst.host_node.node_id
        cpu_pk, cpu_id, log_pk = cpu.id, cpu.canonical_uuid, log_alarm.id
    roles["client"].events.publish("hva/instance_turnedoff", [inst_id], sender=node)
    [message] = _queued_tasks(roles, f"resource-alarm-registry.{node}")
    assert message["headers"]["task"] == "resource-alarm-registry.delete_alarms"
    assert message["headers"]["argsrepr"] == repr([[cpu_id]])
    with unit_of_work(roles["db_url"]) as session:
        # The job is written in the same transaction as the reset: both are visible.
        assert session.get(Alarm, cpu_pk).state == "init"
        assert session.get(Alarm, log_pk).state == "alarm"  # not a resource alarm


def test_terminated_event_takes_the_instance_out_of_its_load_balancer(roles):
    with unit_of_work(roles["db_url"]) as session:
        pair = make.load_balanced_pair(session, cidr="10.77.0.0/24")
        teardown.finalize_instance(session, pair.backend)
        inst_id, node = pair.backend.canonical_uuid, pair.backend.host_node.node_id
        lb_id, lb_queue = pair.lb.id, f"loadbalancer.{pair.lb_vm.canonical_uuid}"
        group_pk = pair.group.id
    roles["client"].events.publish("hva/instance_terminated", [inst_id], sender=node)
    [message] = _queued_tasks(roles, lb_queue)
    assert message["headers"]["task"] == "loadbalancer.update_config"
    config = _task_args(message)[0]
    assert config["servers"] == [{"ipv4": "10.77.0.21", "backup": True}]
    with unit_of_work(roles["db_url"]) as session:
        targets = session.query(LoadBalancerTarget).filter_by(load_balancer_id=lb_id).all()
        assert [t.fallback_mode for t in targets if t.deleted_at is None] == ["on"]
        assert session.get(SecurityGroup, group_pk) is None
