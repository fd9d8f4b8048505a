"""Every sta-collector method through a real worker: happy path, unknown id, bad argument."""

from __future__ import annotations

import pytest

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import ISCSI
from tests.support.rpc import method_tests, rpc_error
from workers.agent.client import RpcError
from workers.demo.world import make

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(worker):
    """A fresh volume, snapshot, backup objects and images for each test: tests change them."""
    with unit_of_work(worker.db_url) as session:
        node = make.storage_node(session)
        vol = make.volume(session, None, ISCSI, node=node)
        storage = make.backup_storage(session, node_id=f"bksta.b{new_uuid()}")
        bo = make.backup_object(session, storage, state="pending", progress=0.0)
        image = make.image(session, backup_object=bo, state="creating")
        ready_bo = make.backup_object(session, storage, state="available")
        ready = make.image(session, backup_object=ready_bo, state="creating")
        from collector.models import VolumeSnapshot

        snap = VolumeSnapshot(storage_node_id=node.id, origin_volume_id=vol.canonical_uuid)
        session.add(snap)
        session.flush()
        return {"node": node.node_id, "vol": vol.canonical_uuid, "bo": bo.canonical_uuid,
                "image": image.canonical_uuid, "snap": snap.canonical_uuid,
                "bksta": storage.node_id, "ready": ready.canonical_uuid}


HAPPY = [
    ("get_available_volumes", lambda w: [w["node"]],
     lambda r, w, read: w["vol"] in [v["uuid"] for v in r]),
    ("get_volume", lambda w: [w["vol"]],
     lambda r, w, read: r["uuid"] == w["vol"] and r["volume_device"]["storage_node"]["node_id"]),
    ("get_snapshot", lambda w: [w["snap"]], lambda r, w, read: r["uuid"] == w["snap"]),
    ("get_backup_object", lambda w: [w["bo"]],
     lambda r, w, read: r["uri"].endswith(w["bo"]) and r["backup_storage"]["uuid"].startswith("bkst-")),
    ("get_image", lambda w: [w["image"]], lambda r, w, read: r["backup_object"]["uuid"] == w["bo"]),
    ("update_volume", lambda w: [w["vol"], {"status": "online"}],
     lambda r, w, read: r is None and read("get_volume", w["vol"])["status"] == "online"),
    ("update_snapshot", lambda w: [w["snap"], {"state": "available"}],
     lambda r, w, read: r is None and read("get_snapshot", w["snap"])["state"] == "available"),
    ("update_backup_object", lambda w: [w["bo"], {"progress": 10.5}],
     lambda r, w, read: r is None and read("get_backup_object", w["bo"])["progress"] == 10.5),
    ("register_backup_object_transfer", lambda w: [w["bksta"], {"size": 5}],
     lambda r, w, read: r["state"] == "pending" and r["size"] == 5),
    ("register_image_transfer", lambda w: [w["bksta"], {"arch": "x86_64"}, {"size": 5}],
     lambda r, w, read: r["image"]["backup_object_id"] == r["backup_object"]["uuid"]),
    ("post_process_backup_image", lambda w: [w["ready"]],
     lambda r, w, read: r is None and read("get_image", w["ready"])["state"] == "available"),
    ("update_image", lambda w: [w["image"], {"description": "nightly"}],
     lambda r, w, read: r is None and read("get_image", w["image"])["description"] == "nightly"),
]

UNKNOWN = [
    ("get_available_volumes", ["sta.nothere"], "UnknownStorageNodeID"),
    ("get_volume", ["vol-zzzzzzzz"], "UnknownVolumeID"),
    ("get_snapshot", ["snap-zzzzzzzz"], "UnknownSnapshotID"),
    ("get_backup_object", ["bo-zzzzzzzz"], "UnknownBackupObjectID"),
    ("get_image", ["wmi-zzzzzzzz"], "UnknownImageID"),
    ("update_volume", ["vol-zzzzzzzz", {"status": "online"}], "UnknownVolumeID"),
    ("update_snapshot", ["snap-zzzzzzzz", {"state": "available"}], "UnknownSnapshotID"),
    ("update_backup_object", ["bo-zzzzzzzz", {"progress": 1}], "UnknownBackupObjectID"),
    ("register_backup_object_transfer", ["bksta.nothere", {}], "UnknownBackupStorage"),
    ("register_image_transfer", ["bksta.nothere", {}, {}], "UnknownBackupStorage"),
    ("post_process_backup_image", ["wmi-zzzzzzzz"], "UnknownImageID"),
    ("update_image", ["wmi-zzzzzzzz", {"description": "x"}], "UnknownImageID"),
]

BAD = [
    ("get_available_volumes", [7]),
    ("get_volume", ["i-abcdefgh"]),
    ("get_snapshot", [None]),
    ("get_backup_object", ["bo-x", "extra"]),
    ("get_image", []),
    ("update_volume", ["VOL", {"force_destroy": True}]),
    ("update_snapshot", ["SNAP", {"state": 5}]),
    ("update_backup_object", ["BO", {"progress": "half"}]),
    ("register_backup_object_transfer", ["bksta.x", "not a dict"]),
    ("register_image_transfer", ["bksta.x", {}]),
    ("post_process_backup_image", [{"id": 1}]),
    ("update_image", ["IMAGE", {"state": "exploded"}]),
    # Values the columns cannot hold: refused alike on SQLite (which would store them) and
    # PostgreSQL (which would fail mid-transaction).
    ("update_image", ["IMAGE", {"display_name": "x" * 256}]),
    ("update_backup_object", ["BO", {"size": 2 ** 70}]),
    ("update_volume", ["VOL", {"volume_device": {"lun": "zero"}}]),
    ("register_image_transfer", ["bksta.x", {"arch": 64}, {}]),
    ("register_image_transfer", ["bksta.x", {"arch": "x86_64-with-a-long-suffix"}, {}]),
    ("register_backup_object_transfer", ["bksta.x", {"size": "5 GiB"}]),
]


test_happy_path, test_unknown_id = method_tests("sta-collector", HAPPY, UNKNOWN)


@pytest.mark.parametrize("method, args", BAD, ids=[c[0] for c in BAD])
def test_bad_argument(collector_client, world, method, args):
    args = [world[{"VOL": "vol", "SNAP": "snap", "BO": "bo", "IMAGE": "image"}[a]]
            if a in ("VOL", "SNAP", "BO", "IMAGE") else a for a in args]
    assert rpc_error(collector_client, "sta-collector", method, *args).error_type == \
        "InvalidArgument"


def test_out_of_order_volume_update_is_refused_through_the_worker(collector_client, world):
    sta = collector_client.rpc("sta-collector")
    sta.update_volume(world["vol"], {"state": "attaching"})
    sta.update_volume(world["vol"], {"state": "attached"})
    with pytest.raises(RpcError) as info:
        sta.update_volume(world["vol"], {"state": "attaching"})
    assert info.value.error_type == "InvalidStateTransition"
    assert sta.get_volume(world["vol"])["state"] == "attached"
