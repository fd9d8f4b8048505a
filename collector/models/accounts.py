"""Accounts: the owners named by every ``account_id`` column (a canonical id ``a-...``)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from collector.errors import NotFound
from collector.models.base import Base, SoftDelete, Taggable, Timestamps, register_taggable


@register_taggable
class Account(Taggable, SoftDelete, Timestamps, Base):
    """A tenant; other tables refer to it by canonical id string, not by foreign key."""

    __tablename__ = "accounts"
    prefix = "a"
    not_found = NotFound

    description: Mapped[str | None] = mapped_column(String(255))
