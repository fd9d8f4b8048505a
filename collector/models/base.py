"""Declarative base and the cross-cutting model behaviour of the original.

- ``Base``: integer primary key ``id``; ``created_at``/``updated_at`` maintained here.
- ``Taggable``: a ``uuid`` column with the 8-char id part, a class-level ``prefix``,
  ``canonical_uuid``, lookup by canonical id (wrong prefix -> InvalidArgument) and the
  generic ``to_hash`` (all columns, ``id`` = integer, ``uuid`` = canonical id).
- ``SoftDelete``: ``deleted_at`` and ``alive()`` filters.
- ``UTCDateTime``: stores naive UTC, returns aware UTC on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from sqlalchemy import DateTime, Integer, String, TypeDecorator, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column
from sqlalchemy.types import JSON

from collector import ids
from collector.timeutil import to_iso, utcnow


class UTCDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON, list: JSON}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)

    def column_values(self) -> dict[str, Any]:
        """Raw column values, times as ISO-8601 strings (the original's default to_hash)."""
        out: dict[str, Any] = {}
        for attr in sa_inspect(type(self)).column_attrs:
            value = getattr(self, attr.key)
            out[attr.columns[0].name] = to_iso(value) if isinstance(value, datetime) else value
        return out

    def to_hash(self) -> dict[str, Any]:
        return self.column_values()


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class Taggable:
    """A model with a canonical id ``<prefix>-<uuid>``."""

    prefix: ClassVar[str]
    not_found: ClassVar[type[Exception]]  # the typed error for an unknown id

    @declared_attr
    def uuid(cls) -> Mapped[str]:  # noqa: N805 - SQLAlchemy declared_attr
        return mapped_column(String(64), unique=True, nullable=False, default=ids.new_uuid)

    @property
    def canonical_uuid(self) -> str:
        return ids.canonical(self.prefix, self.uuid)

    @classmethod
    def by_cuuid(cls, session: Session, cuuid: object, *, for_update: bool = False) -> Self:
        """The row for ``cuuid`` (soft-deleted rows included, as the original's ``Model[x]``).

        Wrong type or prefix -> InvalidArgument; no such row -> ``cls.not_found``.
        """
        raw = ids.raw_part(cuuid, cls.prefix)
        stmt = select(cls).where(cls.uuid == raw)
        if for_update:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).first()
        if row is None:
            raise cls.not_found(f"unknown id '{cuuid}'")
        return row

    @classmethod
    def find_cuuid(cls, session: Session, cuuid: object) -> Self | None:
        """Like ``by_cuuid`` but None when the row does not exist (wrong prefix still raises)."""
        raw = ids.raw_part(cuuid, cls.prefix)
        return session.scalars(select(cls).where(cls.uuid == raw)).first()

    def to_hash(self) -> dict[str, Any]:
        out = self.column_values()  # type: ignore[attr-defined]
        out["uuid"] = self.canonical_uuid
        return out


class SoftDelete:
    """Soft deletion through ``deleted_at`` (the original's ``alives``)."""

    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def is_alive(self) -> bool:
        return self.deleted_at is None

    @classmethod
    def alive(cls):  # noqa: ANN206 - returns a SQL expression
        return cls.deleted_at.is_(None)

    def soft_delete(self, when: datetime | None = None) -> None:
        if self.deleted_at is None:
            self.deleted_at = when or utcnow()

    def destroy(self, when: datetime | None = None) -> None:
        """Soft delete; rows with a ``state`` column also become ``deleted``."""
        self.soft_delete(when)
        if hasattr(self, "state"):
            self.state = "deleted"


TAGGABLE_CLASSES: dict[str, type] = {}


def register_taggable(cls: type) -> type:
    """Class decorator: record the model under its prefix (polymorphic lookups)."""
    prefix = cls.prefix  # type: ignore[attr-defined]
    if prefix in TAGGABLE_CLASSES and TAGGABLE_CLASSES[prefix] is not cls:
        raise RuntimeError(f"duplicate prefix {prefix!r}")
    TAGGABLE_CLASSES[prefix] = cls
    return cls


def find_taggable(session: Session, cuuid: object) -> Any | None:
    """Polymorphic lookup by canonical id; InvalidArgument for bad syntax/unknown prefix."""
    prefix, raw = ids.split(cuuid)
    cls = TAGGABLE_CLASSES.get(prefix)
    if cls is None:
        from collector.errors import InvalidArgument

        raise InvalidArgument(f"unknown id prefix: {prefix!r}")
    return session.scalars(select(cls).where(cls.uuid == raw)).first()


__all__ = [
    "Base", "Timestamps", "Taggable", "SoftDelete", "UTCDateTime", "JSON",
    "register_taggable", "find_taggable", "TAGGABLE_CLASSES",
]
