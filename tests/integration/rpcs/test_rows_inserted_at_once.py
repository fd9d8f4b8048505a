"""New objects inserted at once (``collector.db.insert_objects_now``: what a request's
instances and volumes take) are in the session as rows read back: every column holds what
a flush would have written, reading them sends nothing to the database, and the
transaction's later changes to them are written. In a savepoint they are left to the flush,
and its rollback takes them along."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from collector.db import UnitOfWork, get_engine, insert_objects_now
from collector.errors import InvalidArgument
from collector.ids import new_uuid
from collector.models import Volume

pytestmark = pytest.mark.integration

COLUMNS = [attr.key for attr in Volume.__mapper__.column_attrs
           if attr.key not in ("id", "created_at", "updated_at")]


def _volume(**values) -> Volume:
    return Volume(uuid=new_uuid(), account_id="a-atonce", size=10, state="scheduling", **values)


@pytest.fixture()
def sent(db_url):
    """The statements sent to the database while the test runs."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", count)
    yield statements
    event.remove(engine, "before_cursor_execute", count)


def test_objects_inserted_at_once_hold_what_a_flush_writes_and_read_nothing_back(db_url, sent):
    with UnitOfWork(db_url) as uow:
        at_once, flushed = _volume(display_name="at once"), _volume(display_name="flushed")
        assert insert_objects_now(uow.session, [at_once])
        uow.session.add(flushed)
        uow.session.flush()
        before = len(sent)
        shown = {key: getattr(at_once, key) for key in COLUMNS}
        assert len(sent) == before, "reading an object inserted at once sent a statement"
        assert at_once in uow.session and at_once.id is not None
        assert at_once.created_at is not None and at_once.updated_at is not None
        # Python defaults computed as the flush computes them.
        assert {key: value for key, value in shown.items() if key != "uuid"} == \
            {key: getattr(flushed, key) if key != "display_name" else "at once"
             for key in COLUMNS if key != "uuid"}
        at_once.state = "available"  # changed later in the transaction: written at commit
    with UnitOfWork(db_url) as check:
        row = check.session.scalar(select(Volume).where(Volume.uuid == at_once.uuid))
        assert {key: getattr(row, key) for key in COLUMNS} == {**shown, "state": "available"}


def test_in_a_savepoint_they_are_left_to_the_flush_and_its_rollback_takes_them(db_url):
    with UnitOfWork(db_url) as uow:
        kept = _volume()
        assert insert_objects_now(uow.session, [kept])
        savepoint = uow.session.begin_nested()
        undone = _volume()
        assert not insert_objects_now(uow.session, [undone])
        assert undone not in uow.session  # the caller adds it for the flush
        uow.session.add(undone)
        uow.session.flush()
        savepoint.rollback()
    with UnitOfWork(db_url) as check:
        found = set(check.session.scalars(select(Volume.uuid).where(
            Volume.uuid.in_([kept.uuid, undone.uuid]))))
    assert found == {kept.uuid}


def test_a_value_its_column_cannot_hold_is_refused_and_nothing_is_written(db_url):
    volume = _volume(display_name="x" * 300)
    uow = UnitOfWork(db_url)
    with pytest.raises(InvalidArgument, match="volumes.display_name"), uow:
        insert_objects_now(uow.session, [volume])
    with UnitOfWork(db_url) as check:
        assert check.session.scalar(select(Volume.id).where(Volume.uuid == volume.uuid)) is None
