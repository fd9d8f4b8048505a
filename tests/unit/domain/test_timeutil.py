"""Times: ISO-8601 in, aware UTC out, within what Python and both databases hold."""

import pytest

from collector.errors import InvalidArgument
from collector.timeutil import parse_time


@pytest.mark.parametrize("text", [
    "9999-12-31T23:59:59-00:01",  # past year 9999 once in UTC
    "0001-01-01T00:00:00+00:01",  # before year 1 once in UTC
    "0001-01-01T00:00:00Z", "9999-12-31T12:00:00Z",  # no day to spare at either end
    "10000-01-01T00:00:00Z", "not a time", "",
])
def test_times_out_of_range_or_malformed_are_invalid_argument(text):
    with pytest.raises(InvalidArgument):
        parse_time(text, "t")


def test_times_are_aware_utc():
    assert parse_time("2026-01-01T05:00:00+05:00").isoformat() == "2026-01-01T00:00:00+00:00"
    assert parse_time("2026-01-01T00:00:00").isoformat() == "2026-01-01T00:00:00+00:00"
    assert parse_time("9999-12-29T23:59:59Z").year == 9999
    assert parse_time(None) is None
    with pytest.raises(InvalidArgument):
        parse_time(20260101, "t")
