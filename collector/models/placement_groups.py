"""Placement groups: instances placed together (affinity) or apart (anti-affinity).

Members carry ``instances.placement_group_id``. The hard policies are conditions of the
statement that claims a host, and a placement locks the group's row first, so claims of
one group are serialized (``collector.scheduling.groups``); the soft ones only rank.
"""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.errors import UnknownPlacementGroupID
from collector.models.base import Base, SoftDelete, Taggable, Timestamps, register_taggable

AFFINITY, ANTI_AFFINITY = "affinity", "anti-affinity"
SOFT_AFFINITY = "soft-affinity"  # and "soft-anti-affinity": only ranking tells them apart


@register_taggable
class PlacementGroup(Taggable, SoftDelete, Timestamps, Base):
    __tablename__ = "placement_groups"
    prefix = "pg"
    not_found = UnknownPlacementGroupID

    account_id: Mapped[str | None] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    policy: Mapped[str] = mapped_column(String(32), nullable=False)
    # members one host may hold under (soft-)anti-affinity (1 unless asked)
    max_per_host: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
