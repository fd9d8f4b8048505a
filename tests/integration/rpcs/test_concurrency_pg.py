"""Concurrent callers on one row, on PostgreSQL, with several worker processes.

For each write RPC, N calls in flight at once for the same row end in a state some serial
order of those calls would give, and each side effect (a job in the ledger, an outbox
event or task) exists exactly once. SQLite serialises writers and proves nothing here.

Calls are all sent before any answer is awaited, so they reach the workers' threads
(3 processes x 4 threads) together.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import (
    Alarm,
    BackupObject,
    HostNodeVnet,
    Instance,
    NetworkRoute,
    NodeState,
    OutboxMessage,
    QueuedJob,
    Volume,
)
from collector.scheduling import teardown
from tests.support.servers import WorkerProcess
from workers.agent.client import Collector, RpcError, error_from_exception
from workers.demo.world import make

pytestmark = pytest.mark.integration

REDIS_DB = 8
WORKERS = 3
N = 4


@pytest.fixture(scope="module")
def pg(postgres_server, redis_server):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"concurrency_{new_uuid()}")
    upgrade(db_url)
    broker = f"{redis_server.url}/{REDIS_DB}"
    workers = [WorkerProcess(db_url, broker, "all", ("--concurrency", "4"))
               for _ in range(WORKERS)]
    for w in workers:
        w.wait_ready()
    client = Collector(broker, timeout=30)
    yield {"db_url": db_url, "client": client, "workers": workers}
    client.close()
    for w in workers:
        w.stop()


def concurrently(client: Collector, calls: list[tuple[str, str, tuple]]) -> list[Any]:
    """Send every call, then collect every answer: a value, or the RpcError it raised."""
    pending = [client.app.send_task(f"{endpoint}.{method}", args=list(args), queue=endpoint,
                                    expires=30) for endpoint, method, args in calls]
    answers: list[Any] = []
    for result in pending:
        try:
            answers.append(result.get(timeout=30, disable_sync_subtasks=False))
        except Exception as exc:  # the rebuilt remote error
            answers.append(error_from_exception(exc))
        finally:
            result.forget()
    return answers


def _errors(answers: list[Any]) -> Counter:
    return Counter(a.error_type for a in answers if isinstance(a, RpcError))


def _count(db_url: str, stmt) -> int:
    with unit_of_work(db_url) as session:
        return session.scalar(select(func.count()).select_from(stmt.subquery()))


def _jobs(db_url: str, **where: Any):
    stmt = select(QueuedJob.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(QueuedJob, key) == value)
    return _count(db_url, stmt)


def _outbox(db_url: str, **where: Any) -> int:
    stmt = select(OutboxMessage.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(OutboxMessage, key) == value)
    return _count(db_url, stmt)


def _instance_with_nat_route(session) -> Instance:
    """A running instance (2 volumes, 1 vif) whose address is NATed to an outer lease."""
    inst = make.running_instance(session, net=make.network(session, "10.50.0.0/24"))
    vif = inst.network_vifs[0]
    outer_net = make.network(session, "172.16.0.0/24")
    outer = make.lease_ip(session, vif, outer_net, "172.16.0.20")
    session.add(NetworkRoute(inner_lease_id=vif.ip_leases[0].id, outer_lease_id=outer.id))
    session.flush()
    return inst


def test_terminating_one_instance_four_times_at_once_sends_each_job_once(pg):
    with unit_of_work(pg["db_url"]) as session:
        inst = _instance_with_nat_route(session)
        inst_id = inst.canonical_uuid
        volumes = [v.canonical_uuid for v in inst.volumes]
    calls = [("hva-collector", "update_instance", (inst_id, {"state": "terminated"})),
             ("hva-collector", "finalize_instance", (inst_id,))] * (N // 2)

    answers = concurrently(pg["client"], calls)

    assert answers == [None] * N  # every caller is told the instance is finalized
    for vol in volumes:
        assert _jobs(pg["db_url"], resource_id=vol, job_name="delete_volume") == 1, vol
    with unit_of_work(pg["db_url"]) as session:
        row = Instance.by_cuuid(session, inst_id)
        assert (row.state, row.status) == ("terminated", "offline")
        routes = session.scalars(select(NetworkRoute).where(
            NetworkRoute.inner_lease_id == row.network_vifs[0].ip_leases[0].id)).all()
        assert [r.deleted_at is not None for r in routes] == [True]
        published = session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key.like("vnet/network_route/deleted.%"))).all()
        assert sum(1 for m in published if m.payload["args"][1] == [routes[0].id]) == 1
        assert {v.state for v in session.scalars(select(Volume).where(
            Volume.uuid.in_([v.split("-", 1)[1] for v in volumes])))} == {"deleting"}


def test_two_concurrent_state_reports_never_end_halting_after_halted(pg):
    rounds = 8
    with unit_of_work(pg["db_url"]) as session:
        host = make.host_node(session)
        ids = [make.instance(session, host).canonical_uuid for _ in range(rounds)]
    calls = []
    for inst_id in ids:
        calls += [("hva-collector", "update_instance", (inst_id, {"state": "halted"})),
                  ("hva-collector", "update_instance", (inst_id, {"state": "halting"}))]

    answers = concurrently(pg["client"], calls)

    with unit_of_work(pg["db_url"]) as session:
        states = {i: Instance.by_cuuid(session, i).state for i in ids}
    for k, inst_id in enumerate(ids):
        halted, halting = answers[2 * k], answers[2 * k + 1]
        # Serial orders: halting then halted (both ok), or halted then halting (refused).
        assert states[inst_id] == "halted", (inst_id, halted, halting)
        assert halted is None
        assert halting is None or halting.error_type == "InvalidStateTransition"


def test_volume_deleted_four_times_at_once_is_deleted_once(pg):
    with unit_of_work(pg["db_url"]) as session:
        vol = make.volume(session, None, "iscsi", node=make.storage_node(session))
        vol_id = vol.canonical_uuid
    answers = concurrently(pg["client"], [
        ("sta-collector", "update_volume", (vol_id, {"state": "deleted"}))] * N)
    assert answers == [None] * N
    with unit_of_work(pg["db_url"]) as session:
        row = Volume.by_cuuid(session, vol_id)
        assert row.state == "deleted" and row.deleted_at is not None


def test_backup_progress_reported_concurrently_ends_at_the_highest(pg):
    with unit_of_work(pg["db_url"]) as session:
        bo = make.backup_object(session, state="creating", progress=0.0)
        bo_id = bo.canonical_uuid
    reports = [10, 70, 30, 50, 20, 60]
    answers = concurrently(pg["client"], [
        ("sta-collector", "update_backup_object", (bo_id, {"progress": p})) for p in reports])
    assert answers == [None] * len(reports)
    with unit_of_work(pg["db_url"]) as session:
        assert BackupObject.by_cuuid(session, bo_id).progress == 70.0


def test_host_vnet_prepared_concurrently_exists_once(pg):
    with unit_of_work(pg["db_url"]) as session:
        host = make.host_node(session)
        net = make.network(session, "10.60.0.0/24")
        host_id, net_id, host_pk = host.canonical_uuid, net.canonical_uuid, host.id
    answers = concurrently(pg["client"], [
        ("hva-collector", "prepare_host_node_vnet", (host_id, net_id))] * N)
    assert not _errors(answers)
    assert len({a["broadcast_addr"] for a in answers}) == 1
    assert _count(pg["db_url"], select(HostNodeVnet.id).where(
        HostNodeVnet.host_node_id == host_pk)) == 1


def test_job_claimed_by_four_workers_at_once_runs_on_one(pg):
    client = pg["client"]
    queue = f"hva-handle.hva.c{new_uuid()}"
    job_id = client.call("jobqueue-proxy", "push_job", queue, "reboot", ["i-abc12345"], None, 0)
    answers = concurrently(client, [
        ("jobqueue-proxy", "running", (job_id, f"{queue}:w{k}")) for k in range(N)])
    assert sum(1 for a in answers if a["run"]) == 1
    with unit_of_work(pg["db_url"]) as session:
        job = QueuedJob.by_cuuid(session, job_id)
        assert (job.state, job.delivery_count) == ("running", 1)


def test_failure_reported_four_times_at_once_pushes_the_job_again_once(pg):
    client = pg["client"]
    queue = f"hva-handle.hva.f{new_uuid()}"
    job_id = client.call("jobqueue-proxy", "push_job", queue, "reboot", ["i-abc12345"], None, 3)
    assert client.call("jobqueue-proxy", "running", job_id, "w1")["run"]
    answers = concurrently(client, [
        ("jobqueue-proxy", "finish_fail", (job_id, {"message": "boom"}))] * N)
    assert not _errors(answers)
    assert _outbox(pg["db_url"], task_id=job_id) == 2  # the first push and one retry
    with unit_of_work(pg["db_url"]) as session:
        assert QueuedJob.by_cuuid(session, job_id).state == "pending"


def test_job_cancelled_four_times_at_once_is_revoked_once(pg):
    client = pg["client"]
    queue = f"hva-handle.hva.x{new_uuid()}"
    job_id = client.call("jobqueue-proxy", "push_job", queue, "reboot", ["i-abc12345"], None, 0)
    assert client.call("jobqueue-proxy", "running", job_id, "w1")["run"]
    answers = concurrently(client, [("jobqueue-proxy", "cancel", (job_id,))] * N)
    assert _errors(answers) == Counter({"AlreadyTerminated": N - 1})
    assert _count(pg["db_url"], select(OutboxMessage.id).where(
        OutboxMessage.kind == "control",
        OutboxMessage.payload["args"][0].as_string() == job_id)) == 1


def test_first_heartbeats_of_a_node_at_once_record_it_once(pg):
    node = f"hva.n{new_uuid()}"
    answers = concurrently(pg["client"], [("node-collector", "notify", (node, "boot1"))] * N)
    assert answers == [None] * N
    answers = concurrently(pg["client"], [("node-collector", "notify", (node, "boot2"))] * N)
    assert answers == [None] * N
    assert _count(pg["db_url"], select(NodeState.id).where(NodeState.node_id == node)) == 1
    with unit_of_work(pg["db_url"]) as session:
        events = Counter(m.routing_key.split(".", 1)[0] for m in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "event"))
            if node in str(m.payload["args"][1]))
    assert events == Counter({"node_collector/monitored": 1, "node_collector/restarted": 1})


def test_alarm_updated_concurrently_keeps_one_of_the_reports(pg):
    with unit_of_work(pg["db_url"]) as session:
        alarm = make.alarm(session, make.instance(session), "cpu.usage")
        alarm_id = alarm.canonical_uuid
    values = [1.0, 2.0, 3.0, 4.0]
    answers = concurrently(pg["client"], [
        ("alarm-collector", "update_alarm", (alarm_id, {"state": "alarm",
                                                        "last_evaluated_value": v}))
        for v in values])
    assert answers == [None] * len(values)
    with unit_of_work(pg["db_url"]) as session:
        row = Alarm.by_cuuid(session, alarm_id)
        assert row.state == "alarm" and row.last_evaluated_value in values


def _handled(workers: list[WorkerProcess], task: str) -> int:
    pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] (succeeded|raised|retry)")
    return sum(1 for w in workers for line in w.log_text().splitlines() if pattern.search(line))


def test_terminated_event_handled_four_times_at_once_has_each_effect_once(pg):
    """A repeated event (redelivery) reaches the handlers of both roles concurrently."""
    with unit_of_work(pg["db_url"]) as session:
        pair = make.load_balanced_pair(session, cidr="10.70.0.0/24")
        make.alarm(session, pair.backend, "log")
        make.alarm(session, pair.backend, "cpu.usage")
        teardown.finalize_instance(session, pair.backend)
        inst_id, node = pair.backend.canonical_uuid, pair.backend.host_node.node_id
        lb_queue = f"loadbalancer.{pair.lb_vm.canonical_uuid}"
    handlers = ("events.alarm-collector.on_instance_terminated",
                "events.event-hook.on_instance_terminated")
    before = {h: _handled(pg["workers"], h) for h in handlers}
    for _ in range(N):
        pg["client"].events.publish("hva/instance_terminated", [inst_id], sender=node)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            _handled(pg["workers"], h) < before[h] + N for h in handlers):
        time.sleep(0.2)
    assert all(_handled(pg["workers"], h) >= before[h] + N for h in handlers)

    assert _jobs(pg["db_url"], queue_name=f"resource-alarm-registry.{node}",
                 resource_id=inst_id) == 1
    assert _jobs(pg["db_url"], queue_name=f"log-alarm-registry.{node}",
                 resource_id=inst_id) == 1
    assert _outbox(pg["db_url"], queue=lb_queue, name="loadbalancer.update_config") == 1
