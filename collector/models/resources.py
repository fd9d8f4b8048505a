"""Resource metric samples stored by ``resource-collector.resource_store``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.models.base import Base, UTCDateTime
from collector.timeutil import utcnow


class ResourceSample(Base):
    __tablename__ = "resource_samples"
    __table_args__ = (Index("ix_resource_samples_resource_time", "resource_id", "sampled_at"),)

    resource_id: Mapped[str] = mapped_column(String(255), nullable=False)
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    metrics: Mapped[dict] = mapped_column(nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
