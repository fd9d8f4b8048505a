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


def parse_time(value: object, field: str = "time") -> datetime | None:
    """Accept None, a datetime or an ISO-8601 string; anything else is InvalidArgument."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidArgument(f"{field}: not an ISO-8601 time: {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidArgument(f"{field}: expected an ISO-8601 string, got {type(value).__name__}")
