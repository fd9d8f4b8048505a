"""Agents' one-shot heartbeats reach the Collector and make their node online."""

import time

import pytest

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import NodeState

pytestmark = pytest.mark.integration


def test_oneshot_heartbeat_marks_the_node_online(collector_client, worker):
    node_id = f"hva.n{new_uuid()}"
    collector_client.oneshot("node-collector").notify(node_id, "boot1")
    deadline = time.monotonic() + 20
    state = None
    while time.monotonic() < deadline and state != "online":
        with unit_of_work(worker.db_url) as session:
            row = session.query(NodeState).filter_by(node_id=node_id).one_or_none()
            state = row.state if row else None
        time.sleep(0.1)
    assert state == "online"
    nodes = collector_client.rpc("node-collector").list()
    assert any(n["node_id"] == node_id and n["boot_token"] == "boot1" for n in nodes)
