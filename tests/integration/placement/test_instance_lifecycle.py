"""get_instance / update_instance / finalize_instance through a real worker and Redis."""

from __future__ import annotations

import json
import time

import pytest
import redis

from collector.db import unit_of_work
from collector.models import Instance, OutboxMessage, QueuedJob
from workers.agent.client import RpcError
from workers.demo.world import make

pytestmark = pytest.mark.integration


@pytest.fixture()
def running(worker):
    with unit_of_work(worker.db_url) as session:
        inst = make.running_instance(session)
        return {
            "id": inst.canonical_uuid,
            "node": inst.host_node.node_id,
            "storage": inst.volumes[1].iscsi_volume.storage_node.node_id,
            "volumes": [v.canonical_uuid for v in inst.volumes],
        }


def _state(db_url: str, cuuid: str) -> tuple[str, str]:
    with unit_of_work(db_url) as session:
        inst = Instance.by_cuuid(session, cuuid)
        return inst.state, inst.status


def test_get_instance_returns_the_document(collector_client, running):
    doc = collector_client.rpc("hva-collector").get_instance(running["id"])
    assert doc["uuid"] == running["id"]
    assert doc["host_node"]["node_id"] == running["node"]
    assert set(doc["volume"]) == set(running["volumes"])
    assert doc["vif"][0]["ipv4"]["address"] == "10.0.0.10"
    assert doc["created_at"].endswith("Z")


def test_update_instance_is_committed_before_the_reply(collector_client, running, worker):
    hva = collector_client.rpc("hva-collector")
    assert hva.update_instance(running["id"], {"state": "halting", "status": "offline"}) is None
    # No sleep: the answer arrives only after the commit.
    assert _state(worker.db_url, running["id"]) == ("halting", "offline")


def test_out_of_order_update_is_refused_and_writes_nothing(collector_client, running, worker):
    hva = collector_client.rpc("hva-collector")
    hva.update_instance(running["id"], {"state": "halting"})
    with pytest.raises(RpcError) as info:
        hva.update_instance(running["id"], {"state": "pending", "status": "offline"})
    assert info.value.error_type == "InvalidStateTransition"
    assert _state(worker.db_url, running["id"]) == ("halting", "online")


@pytest.mark.parametrize("data", [
    {"force_destroy": True},  # not an updatable field
    {"state": 3},  # wrong type
    {"state": "runing"},  # unknown state
    {},  # nothing to do
    {"status": "online", "host_node_id": "vol-12345678"},  # wrong id kind: status not written
])
def test_bad_update_is_invalid_argument_and_writes_nothing(collector_client, running, worker,
                                                           data):
    with pytest.raises(RpcError) as info:
        collector_client.rpc("hva-collector").update_instance(running["id"], data)
    assert info.value.error_type == "InvalidArgument"
    assert _state(worker.db_url, running["id"]) == ("running", "online")


def test_finalize_instance_twice_deletes_volumes_once(collector_client, running, worker):
    hva = collector_client.rpc("hva-collector")
    hva.update_instance(running["id"], {"state": "terminated",
                                        "terminated_at": "2026-01-02T03:04:05Z"})
    hva.finalize_instance(running["id"])  # agents repeat it on failure paths
    doc = hva.get_instance(running["id"])
    assert doc["state"] == "terminated" and doc["status"] == "offline"
    assert doc["terminated_at"] == "2026-01-02T03:04:05Z"
    assert {v["state"] for v in doc["volume"].values()} == {"deleting"}

    conn = redis.Redis.from_url(worker.broker_url)
    local_q, sta_q = f"local-store-handle.{running['node']}", f"sta-handle.{running['storage']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (conn.llen(local_q) and conn.llen(sta_q)):
        time.sleep(0.1)
    local = [json.loads(m) for m in conn.lrange(local_q, 0, -1)]
    sta = [json.loads(m) for m in conn.lrange(sta_q, 0, -1)]
    assert [m["headers"]["task"] for m in local] == ["local-store-handle.delete_volume"]
    assert [m["headers"]["task"] for m in sta] == ["sta-handle.delete_volume"]
    with unit_of_work(worker.db_url) as session:
        sent = session.query(OutboxMessage).filter(
            OutboxMessage.queue.in_([local_q, sta_q])).all()
        assert len(sent) == 2 and all(m.sent_at is not None for m in sent)
        if session.query(QueuedJob).count():  # the job ledger records every job it sends
            assert session.query(QueuedJob).filter(
                QueuedJob.queue_name.in_([local_q, sta_q])).count() == 2


def test_finalize_unknown_instance_is_a_typed_error(collector_client):
    with pytest.raises(RpcError) as info:
        collector_client.rpc("hva-collector").finalize_instance("i-nothere0")
    assert info.value.error_type == "UnknownInstanceID"
