"""One way to apply an agent's report: volumes, snapshots, backup objects and images."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from collector.errors import InvalidArgument, InvalidStateTransition
from collector.models import ISCSI, VolumeSnapshot
from collector.services import images, sta
from collector.states import SNAPSHOT_TRANSITIONS, check_transition
from workers.demo.world import make


def _snapshot(session, **columns):
    vol = make.volume(session, None, ISCSI, node=make.storage_node(session))
    snap = VolumeSnapshot(origin_volume_id=vol.canonical_uuid, **columns)
    session.add(snap)
    session.flush()
    return snap


def test_snapshot_goes_forward_through_its_states(session):
    snap = _snapshot(session)
    sta.update_snapshot(session, snap.canonical_uuid, {"state": "creating"})
    sta.update_snapshot(session, snap.canonical_uuid,
                        {"state": "available", "size": 1024, "destination_key": "local@s/x"})
    assert (snap.state, snap.size, snap.destination_key) == ("available", 1024, "local@s/x")


@pytest.mark.parametrize("bad", ["availble", "initialised", "", "purged"])
def test_snapshot_unknown_state_is_refused(session, bad):
    snap = _snapshot(session, state="creating")
    with pytest.raises(InvalidArgument):
        sta.update_snapshot(session, snap.canonical_uuid, {"state": bad, "size": 7})
    assert (snap.state, snap.size) == ("creating", 0)


def test_snapshot_late_creating_after_available_is_refused(session):
    snap = _snapshot(session, state="creating")
    sta.update_snapshot(session, snap.canonical_uuid, {"state": "available"})
    with pytest.raises(InvalidStateTransition):
        sta.update_snapshot(session, snap.canonical_uuid, {"state": "creating"})
    assert snap.state == "available"


def test_snapshot_resend_of_its_state_is_a_no_op_that_still_copies_fields(session):
    snap = _snapshot(session, state="available", size=10)
    sta.update_snapshot(session, snap.canonical_uuid, {"state": "available"})
    sta.update_snapshot(session, snap.canonical_uuid, {"state": "available", "size": 20})
    assert (snap.state, snap.size) == ("available", 20)


def test_snapshot_machine_never_leaves_deleted():
    assert SNAPSHOT_TRANSITIONS["deleted"] == set()
    with pytest.raises(InvalidStateTransition):
        check_transition("snapshot", SNAPSHOT_TRANSITIONS, "deleted", "available",
                         terminal="deleted")


def _volume(session):
    return make.volume(session, None, ISCSI, node=make.storage_node(session))


def _volume_state(vol):
    return (vol.state, vol.status, vol.deleted_at, vol.iscsi_volume.path, vol.guest_device_name)


def _backup(session):
    return make.backup_object(session, state="creating", progress=10.0)


def _backup_state(bo):
    return (bo.state, bo.deleted_at, bo.progress, bo.checksum, bo.size)


def _image(session):
    return make.image(session, state="creating")


def _image_state(image):
    return (image.state, image.deleted_at, image.description, image.os_type)


def _snapshot_state(snap):
    return (snap.state, snap.deleted_at, snap.size, snap.destination_key)


KINDS = {
    "volume": (_volume, sta.update_volume, _volume_state,
               {"state": "available", "status": "online", "guest_device_name": "vdz",
                "volume_device": {"path": "/late"}}),
    "snapshot": (lambda s: _snapshot(s, state="creating"), sta.update_snapshot,
                 _snapshot_state, {"state": "available", "size": 5, "destination_key": "x@y"}),
    "backup_object": (_backup, sta.update_backup_object, _backup_state,
                      {"state": "available", "progress": 90, "checksum": "late", "size": 1}),
    "image": (_image, images.update_image, _image_state,
              {"state": "available", "description": "late", "os_type": "windows"}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_report_on_a_deleted_row_changes_nothing(session, kind):
    make, update, state_of, late = KINDS[kind]
    row = make(session)
    update(session, row.canonical_uuid, {"state": "deleted", "deleted_at": "2026-01-02T03:04:05Z"})
    before = state_of(row)
    assert before[0] == "deleted" and row.deleted_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    update(session, row.canonical_uuid, late)
    update(session, row.canonical_uuid, {"state": "deleted", "deleted_at": "2027-01-01T00:00:00Z"})
    session.flush()
    assert state_of(row) == before


@pytest.mark.parametrize("kind", KINDS)
def test_report_locks_its_row(session, kind):
    engine = session.get_bind()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks: FOR UPDATE is left out")
    make, update, _, late = KINDS[kind]
    row = make(session)
    session.flush()
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        update(session, row.canonical_uuid, {"state": late["state"]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    lookup = next(s for s in statements if f"FROM {row.__tablename__} " in s)
    assert "FOR UPDATE" in lookup
