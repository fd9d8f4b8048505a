"""sta-collector's domain rules, with a session alone."""

import pytest

from collector.errors import InvalidArgument, InvalidStateTransition, ValidationFailed
from collector.models import ISCSI, BackupObject, Image, Volume
from collector.services import sta
from workers.demo.world import make


def test_late_attaching_after_attached_is_refused(session):
    vol = make.volume(session, None, ISCSI, node=make.storage_node(session))
    sta.update_volume(session, vol.canonical_uuid, {"state": "attaching"})
    sta.update_volume(session, vol.canonical_uuid, {"state": "attached"})
    with pytest.raises(InvalidStateTransition):
        sta.update_volume(session, vol.canonical_uuid, {"state": "attaching"})
    assert vol.state == "attached"


def test_volume_device_and_deletion(session):
    node = make.storage_node(session)
    vol = make.volume(session, None, ISCSI, node=node)
    sta.update_volume(session, vol.canonical_uuid,
                      {"volume_device": {"iqn": "iqn.x:1", "lun": 3}, "state": "available"})
    assert (vol.iscsi_volume.iqn, vol.iscsi_volume.lun) == ("iqn.x:1", 3)
    assert [v["uuid"] for v in sta.get_available_volumes(session, node.node_id)] == [
        vol.canonical_uuid]
    sta.update_volume(session, vol.canonical_uuid, {"state": "deleted",
                                                    "deleted_at": "2026-01-01T00:00:00Z"})
    assert vol.state == "deleted" and vol.deleted_at.year == 2026
    assert sta.get_available_volumes(session, node.node_id) == []
    sta.update_volume(session, vol.canonical_uuid, {"state": "deleted"})  # repeat: no-op
    with pytest.raises(InvalidArgument):
        sta.update_volume(session, vol.canonical_uuid, {"volume_device": {"mount_point": "/x"}})


def test_duplicate_guest_device_name_on_one_instance_is_refused(session):
    inst = make.instance(session, make.host_node(session))
    node = make.storage_node(session)
    make.volume(session, inst, ISCSI, node=node, guest_device_name="vdb")
    other = make.volume(session, None, ISCSI, node=node, state="attaching")
    with pytest.raises(ValidationFailed):
        sta.update_volume(session, other.canonical_uuid,
                          {"state": "attached", "instance_id": inst.canonical_uuid,
                           "guest_device_name": "vdb"})


def test_backup_progress_never_goes_down_and_available_means_100(session):
    bo = make.backup_object(session, state="pending", progress=0.0)
    sta.update_backup_object(session, bo.canonical_uuid, {"state": "creating", "progress": 40})
    sta.update_backup_object(session, bo.canonical_uuid, {"progress": 20.0})  # late, lower
    assert bo.progress == 40.0
    with pytest.raises(InvalidArgument):
        sta.update_backup_object(session, bo.canonical_uuid, {"progress": 140})
    sta.update_backup_object(session, bo.canonical_uuid, {"state": "available"})
    assert (bo.state, bo.progress) == ("available", 100.0)
    with pytest.raises(InvalidStateTransition):
        sta.update_backup_object(session, bo.canonical_uuid, {"state": "creating"})


def test_image_transfer_clones_fields_and_post_process_waits_for_every_backup(session):
    storage = make.backup_storage(session, node_id="bksta.t1")
    out = sta.register_image_transfer(
        session, "bksta.t1", {"display_name": "web", "os_type": "windows", "state": "x",
                              "arch": "x86_64", "boot_dev_type": 2},
        {"size": 1024, "source_volume_id": "vol-aaaaaaaa", "display_name": "web bo"})
    bo = BackupObject.by_cuuid(session, out["backup_object"]["uuid"])
    image = Image.by_cuuid(session, out["image"]["uuid"])
    assert (image.state, image.os_type, image.backup_object_id) == (
        "pending", "windows", bo.canonical_uuid)
    assert (bo.state, bo.backup_storage_id, bo.object_key) == (
        "pending", storage.id, bo.canonical_uuid)
    extra = make.backup_object(session, state="creating")
    image.volumes = [{"backup_object_id": extra.canonical_uuid}]
    bo.state = "available"
    sta.post_process_backup_image(session, image.canonical_uuid)
    assert image.state == "pending"  # the extra volume's backup is not done yet
    extra.state = "available"
    sta.post_process_backup_image(session, image.canonical_uuid)
    assert image.state == "available"


def test_get_volume_without_device_row_has_no_device(session):
    vol = make.volume(session, None, None)
    doc = sta.get_volume(session, vol.canonical_uuid)
    assert doc["volume_device"] is None and doc["source_backup_object"] is None
    assert isinstance(Volume.by_cuuid(session, doc["uuid"]), Volume)
