"""Times: stored as naive UTC, handled as aware UTC, sent as ISO-8601 with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.errors import InvalidArgument


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# The times a field may hold: what Python and both databases hold, in UTC, with a day to
# spare at each end so that a comparison or a small shift never leaves the range.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def parse_time(value: object, field: str = "time") -> datetime | None:
    """Accept None, a datetime or an ISO-8601 string, as an aware UTC time between
    ``EARLIEST`` and ``LATEST``; anything else is InvalidArgument."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(f"{field}: not an ISO-8601 time: {value!r:.60}") from None
    else:
        raise InvalidArgument(
            f"{field}: expected an ISO-8601 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        parsed = None
    if parsed is None or not EARLIEST <= parsed <= LATEST:
        raise InvalidArgument(f"{field}: {value!s:.60} is out of range (years 1 to 9999, UTC)")
    return parsed
