"""Alarms on instance logs and metrics (evaluated by agents; stored here)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.errors import UnknownAlarmID
from collector.models.base import (
    Base,
    SoftDelete,
    Taggable,
    Timestamps,
    UTCDateTime,
    register_taggable,
)

LOG_METRICS = ("log",)
RESOURCE_METRICS = ("cpu.usage", "disk.usage", "memory.usage")
ALARM_STATES = ("init", "ok", "alarm", "insufficient_data")


@register_taggable
class Alarm(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "alarms"
    prefix = "alm"
    not_found = UnknownAlarmID

    account_id: Mapped[str | None] = mapped_column(String(255))
    resource_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    metric_name: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    evaluation_periods: Mapped[int | None] = mapped_column(Integer)
    notification_periods: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict | None] = mapped_column()
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="init")
    state_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ok_actions: Mapped[dict | None] = mapped_column()
    alarm_actions: Mapped[dict | None] = mapped_column()
    insufficient_data_actions: Mapped[dict | None] = mapped_column()
    last_evaluated_value: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
