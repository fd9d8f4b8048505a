"""Agent payloads are checked against the columns they land in, the same on every backend."""

import pytest

from collector.errors import InvalidArgument
from collector.fields import check_fields, cloned_fields
from collector.models import BackupObject, Image, IscsiVolume

IMAGE_FIELDS = {"display_name": (str, type(None)), "description": (str, type(None))}


def test_a_string_longer_than_its_column_is_refused_and_text_is_unlimited():
    with pytest.raises(InvalidArgument, match="'display_name' is longer than 255 characters"):
        check_fields("image", {"display_name": "x" * 256}, IMAGE_FIELDS, Image)
    check_fields("image", {"display_name": "x" * 255, "description": "y" * 100_000},
                 IMAGE_FIELDS, Image)


def test_cloned_fields_keep_known_keys_and_check_type_range_and_null():
    values = cloned_fields("backup object", BackupObject,
                           {"size": 2 ** 40, "checksum": "abc", "unrelated": 1},
                           ("size", "checksum"))
    assert values == {"size": 2 ** 40, "checksum": "abc"}
    for bad, message in [({"size": 2 ** 64}, "out of range"), ({"size": True}, "wrong type"),
                         ({"size": "5 GiB"}, "wrong type")]:
        with pytest.raises(InvalidArgument, match=message):
            cloned_fields("backup object", BackupObject, bad, ("size",))
    with pytest.raises(InvalidArgument, match="'lun' has the wrong type"):
        cloned_fields("iscsi device", IscsiVolume, {"lun": "0"}, ("lun",))
    with pytest.raises(InvalidArgument, match="'arch' cannot be null"):
        cloned_fields("image", Image, {"arch": None}, ("arch",))


def test_values_a_column_cannot_hold_are_refused_at_flush_on_both_databases(session):
    from collector.errors import InvalidArgument
    from collector.models import QueuedJob

    for columns, column in [({"queue_name": "q" * 256}, "queued_jobs.queue_name"),
                            ({"queue_name": "q", "retry_max": 2 ** 31}, "queued_jobs.retry_max")]:
        nested = session.begin_nested()
        session.add(QueuedJob(state="pending", **columns))
        with pytest.raises(InvalidArgument) as info:
            session.flush()
        assert column in str(info.value)
        nested.rollback()
