"""An agent can only be itself: node A, with its own credentials (``collector credentials
issue``: its own Redis ACL user and signing key), tries every way of acting as node B or as
the Collector, against a real worker on PostgreSQL and a real Redis with ACLs.

Each attempt is refused, either by the Collector (a typed ``Unauthorized``) or by the broker
(``NOPERM``), nothing is written, and A's own calls keep working. A revoked node's next call
is refused within one second.
"""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from collector import wire
from collector.config import load_settings
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import EventReceipt, Instance, NodeState, OutboxMessage, QueuedJob, Volume
from collector.signing import Credential
from tests.support.servers import start_worker
from workers.agent.client import Collector, RpcError
from workers.demo.world import make
from workers.node_credentials import issue_node, revoke_node

pytestmark = pytest.mark.integration

REDIS_DB = 13


def _settings(db_url: str, broker: str):
    from dataclasses import replace

    return replace(load_settings(), database_url=db_url, broker_url=broker,
                   result_backend=broker)


@pytest.fixture(scope="module")
def world(postgres_server, redis_server):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"identity_{new_uuid()}")
    upgrade(db_url)
    broker = f"{redis_server.url}/{REDIS_DB}"
    suffix = secrets.token_hex(3)
    a, b = f"hva.ida{suffix}", f"hva.idb{suffix}"
    with unit_of_work(db_url) as session:
        host_a, host_b = make.host_node(session, a), make.host_node(session, b)
        storage = make.storage_node(session, f"sta.ids{suffix}")
        inst_a, inst_b = make.instance(session, host_a), make.instance(session, host_b)
        vol_b = make.volume(session, inst_b, "iscsi", node=storage)
        session.flush()
        ids = {"inst_a": inst_a.canonical_uuid, "inst_b": inst_b.canonical_uuid,
               "vol_b": vol_b.canonical_uuid}
    worker = start_worker(db_url, broker, extra_args=("--concurrency", "4"))
    operator = Collector(broker, timeout=20)
    settings = _settings(db_url, broker)
    env_a, env_b = issue_node(a, settings), issue_node(b, settings)
    cred_a = Credential.from_node_key(env_a.node_id, env_a.node_key)
    agent_a = Collector(env_a.broker_url, env_a.result_backend, timeout=20, credential=cred_a)
    job_b = operator.jobs.submit(wire.node_queue(wire.HVA_HANDLE, b), wire.HvaJob.REBOOT,
                                 ids["inst_b"])
    yield {"db_url": db_url, "broker": broker, "a": a, "b": b, "env_a": env_a, "env_b": env_b,
           "cred_a": cred_a, "agent_a": agent_a, "operator": operator, "job_b": job_b,
           "worker": worker, "settings": settings, "redis": redis_server, **ids}
    agent_a.close()
    operator.close()
    worker.stop()


def _snapshot(db_url: str, w: dict) -> dict:
    """What A must not be able to change: B's rows, and whatever a forged event would add."""
    with unit_of_work(db_url, readonly=True) as session:
        inst_b = session.scalars(select(Instance).where(
            Instance.uuid == w["inst_b"].split("-", 1)[1])).one()
        vol_b = session.scalars(select(Volume).where(
            Volume.uuid == w["vol_b"].split("-", 1)[1])).one()
        job = session.scalars(select(QueuedJob).where(
            QueuedJob.uuid == w["job_b"].split("-", 1)[1])).one()
        return {
            "instance_b": (inst_b.state, inst_b.status, inst_b.host_node_id),
            "volume_b": (vol_b.state, vol_b.status, vol_b.instance_id),
            "job_b": (job.state, job.finish_status, job.worker_id),
            "heartbeat_b": session.scalar(select(func.count()).select_from(NodeState)
                                          .where(NodeState.node_id == w["b"])),
            "receipts": session.scalar(select(func.count()).select_from(EventReceipt)),
            "outbox": session.scalar(select(func.count()).select_from(OutboxMessage)),
        }


def _refused_by_collector(call) -> RpcError:
    with pytest.raises(RpcError) as refused:
        call()
    assert refused.value.error_type == "Unauthorized", refused.value
    return refused.value


def _refused_by_broker(call) -> None:
    with pytest.raises(Exception) as refused:  # noqa: PT011 - kombu or redis-py, NOPERM
        call()
    assert "no permissions" in str(refused.value) or "NOPERM" in str(refused.value) or \
        getattr(refused.value, "error_type", None) == "Unauthorized", refused.value


def test_node_a_cannot_act_as_node_b_nor_as_the_collector(world):
    w, a = world, world["agent_a"]
    before = _snapshot(w["db_url"], w)

    # B's instance, B's volume, a job of B's queue, B's heartbeat: the Collector refuses.
    error = _refused_by_collector(lambda: a.call(
        wire.HVA_COLLECTOR, "update_instance", w["inst_b"], {"state": "halted"}))
    assert w["a"] in error.message and "instance_id" in error.message
    _refused_by_collector(lambda: a.call(wire.HVA_COLLECTOR, "get_instance", w["inst_b"]))
    _refused_by_collector(lambda: a.call(
        wire.STA_COLLECTOR, "update_volume", w["vol_b"], {"state": "available"}))
    _refused_by_collector(lambda: a.call(wire.JOBQUEUE_PROXY, "running", w["job_b"], "a:1"))
    _refused_by_collector(lambda: a.call(wire.JOBQUEUE_PROXY, "finish_success", w["job_b"]))
    _refused_by_collector(lambda: a.call(wire.NODE_COLLECTOR, "notify", w["b"], "tok"))
    _refused_by_collector(lambda: a.call(
        wire.JOBQUEUE_PROXY, "push_job", wire.node_queue(wire.HVA_HANDLE, w["b"]),
        wire.HvaJob.TERMINATE, [w["inst_b"]]))

    # An event as B, or an event no host publishes: refused, no receipt, nothing fanned out.
    for event, sender in ((wire.HvaEvent.INSTANCE_TERMINATED, w["b"]),
                          (wire.NodeEvent.OFFLINE, w["a"])):
        event_id = a.events.publish(event, [w["inst_b"]], sender=sender)
        meta = _wait_for_result(a, event_id)
        assert meta["status"] == "FAILURE", meta
        assert type(meta["result"]).__name__ == "Unauthorized", meta

    # The Collector's internal queues, B's job queue, remote control: the broker refuses.
    _refused_by_broker(lambda: a.call(wire.API, "list_instances"))
    _refused_by_broker(lambda: a.app.send_task(
        wire.Maintenance.REAP_JOBS, queue=wire.MAINTENANCE, ignore_result=True))
    _refused_by_broker(lambda: a.app.send_task(
        "events.event-hook.on_instance_terminated", queue=wire.event_queue(wire.EVENT_HOOK),
        args=[wire.HvaEvent.INSTANCE_TERMINATED, [w["inst_b"]], w["b"]], ignore_result=True))
    _refused_by_broker(lambda: a.app.control.revoke(str(uuid.uuid4()), terminate=True))
    # Had the broker let them through (a Redis without ACLs), the Collector refuses them:
    # A's key over the operator's connection.
    with Collector(w["broker"], timeout=20, credential=w["cred_a"]) as keyed:
        for task, queue, args in (
                (wire.Maintenance.REAP_JOBS, wire.MAINTENANCE, []),
                ("events.event-hook.on_instance_terminated", wire.event_queue(wire.EVENT_HOOK),
                 [wire.HvaEvent.INSTANCE_TERMINATED, [w["inst_b"]], w["b"]]),
                (f"{wire.API}.terminate_instance", wire.API, [w["inst_b"]])):
            result = keyed.app.send_task(task, args=args, queue=queue)
            with pytest.raises(Exception) as refused:  # noqa: PT011 - the rebuilt remote error
                result.get(timeout=20)
            assert type(refused.value).__name__ == "Unauthorized", (task, refused.value)
    raw = redis.Redis.from_url(w["env_a"].broker_url, socket_timeout=5)
    queue_b = wire.node_queue(wire.HVA_HANDLE, w["b"])
    for command in (lambda: raw.lrange(queue_b, 0, -1), lambda: raw.rpop(queue_b),
                    lambda: raw.brpop([queue_b], timeout=1), lambda: raw.keys("*"),
                    lambda: raw.flushall(), lambda: raw.config_get("*"),
                    lambda: raw.lrange(wire.HVA_COLLECTOR, 0, -1)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()

    # Signed as B without B's key, or not signed at all: refused before anything runs.
    forged = Credential(w["b"], 1, secrets.token_bytes(32))
    with Collector(w["env_a"].broker_url, w["env_a"].result_backend, timeout=20,
                   credential=forged) as as_b:
        refused = _refused_by_collector(
            lambda: as_b.call(wire.NODE_COLLECTOR, "notify", w["b"], "t"))
    assert "does not match" in refused.message
    # The refusal is logged with the sender the message claimed.
    assert f"from {w['b']}: the signature of {w['b']} does not match" in w["worker"].log_text()
    unsigned = Celery(broker=w["env_a"].broker_url, backend=w["env_a"].result_backend,
                      set_as_current=False)
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the rebuilt remote error
        unsigned.send_task(f"{wire.NODE_COLLECTOR}.notify", args=[w["a"], "t"],
                           queue=wire.NODE_COLLECTOR, declare=[]).get(timeout=20)
    assert type(refused.value).__name__ == "Unauthorized"
    assert "not signed" in str(refused.value)
    unsigned.close()

    time.sleep(1.5)  # anything that slipped through would have run by now
    assert _snapshot(w["db_url"], w) == before

    # A's own calls keep working, through the same connection and key.
    a.call(wire.HVA_COLLECTOR, "update_instance", w["inst_a"], {"state": "halted"})
    assert a.call(wire.HVA_COLLECTOR, "get_instance", w["inst_a"])["state"] == "halted"
    a.call(wire.NODE_COLLECTOR, "notify", w["a"], "boot-1")
    event_id = a.events.publish(wire.HvaEvent.INSTANCE_TURNEDOFF, [w["inst_a"]])
    assert _wait_for_result(a, event_id)["status"] == "SUCCESS"


def _wait_for_result(client: Collector, task_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = client.app.backend.get_task_meta(task_id)
        if meta.get("status") in ("SUCCESS", "FAILURE"):
            return meta
        time.sleep(0.1)
    raise AssertionError(f"no result for {task_id} in {timeout}s")


def test_a_revoked_node_is_refused_within_a_second(world):
    w = world
    node = f"hva.idr{secrets.token_hex(3)}"
    env = issue_node(node, w["settings"])
    cred = Credential.from_node_key(env.node_id, env.node_key)
    own = Collector(env.broker_url, env.result_backend, timeout=10, credential=cred)
    # The same key over the operator's connection: what the Collector itself checks, apart
    # from the broker's user (a key that leaked without its Redis password).
    keyed = Collector(w["broker"], timeout=10, credential=cred)
    own.call(wire.NODE_COLLECTOR, "notify", node, "boot-1")
    keyed.call(wire.NODE_COLLECTOR, "notify", node, "boot-1")

    revoke_node(node, w["settings"])
    revoked_at = time.monotonic()
    # Its broker user is gone, its connections closed: the next call is refused at once.
    with pytest.raises(RpcError) as refused:
        own.call(wire.NODE_COLLECTOR, "notify", node, "boot-1")
    assert refused.value.error_type == "Unauthorized"
    # Its key: refused by the Collector within one second.
    while True:
        try:
            keyed.call(wire.NODE_COLLECTOR, "notify", node, "boot-1")
        except RpcError as exc:
            assert exc.error_type == "Unauthorized" and "no valid credentials" in exc.message
            break
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revoke"
    assert time.monotonic() - revoked_at < 1.0

    # Issued again: a new key works, the old one stays refused.
    env2 = issue_node(node, w["settings"])
    cred2 = Credential.from_node_key(env2.node_id, env2.node_key)
    assert cred2.generation == cred.generation + 1
    with Collector(env2.broker_url, env2.result_backend, timeout=10, credential=cred2) as new:
        deadline = time.monotonic() + 3
        while True:  # the worker's view of the generation is at most half a second old
            try:
                new.call(wire.NODE_COLLECTOR, "notify", node, "boot-2")
                break
            except RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    with pytest.raises(RpcError) as old:
        keyed.call(wire.NODE_COLLECTOR, "notify", node, "boot-1")
    assert old.value.error_type == "Unauthorized" and "replaced" in old.value.message
    own.close()
    keyed.close()
