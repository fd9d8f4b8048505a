"""Storage strategies LeastUsage and FindFirst (``StorageStrategy``): the online nodes with
room for a shared volume, best first. ``placement.place_storage`` claims."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from collector.errors import InsufficientCapacity, NoMatchingStorageNode
from collector.scheduling.candidates import StorageCandidate
from collector.scheduling.strategies.catalog import register
from collector.scheduling.strategies.protocols import StorageStrategy


def _with_room(candidates: Sequence[StorageCandidate], size_bytes: int
               ) -> list[StorageCandidate]:
    online = [c for c in candidates if c.online]
    if not online:
        raise NoMatchingStorageNode("no storage node is online")
    fitting = [c for c in online if c.free_disk_bytes >= size_bytes]
    if not fitting:
        raise InsufficientCapacity(f"no storage node has {size_bytes} bytes free")
    return fitting


@register("storage_node", "LeastUsage")
@dataclass(frozen=True)
class LeastUsage(StorageStrategy):
    """Online nodes with ``size_bytes`` free, most free first, ties by lowest id."""

    order: ClassVar[str] = "free"

    def rank(self, candidates: Sequence[StorageCandidate], size_bytes: int
             ) -> list[StorageCandidate]:
        return sorted(_with_room(candidates, size_bytes), key=lambda c: (-c.free_disk_bytes, c.id))


@register("storage_node", "FindFirst")
@dataclass(frozen=True)
class FindFirst(StorageStrategy):
    """Online nodes with ``size_bytes`` free, by id (the original's FindFirst was dead code
    and ignored online state and capacity, S5)."""

    order: ClassVar[str] = "id"

    def rank(self, candidates: Sequence[StorageCandidate], size_bytes: int
             ) -> list[StorageCandidate]:
        return sorted(_with_room(candidates, size_bytes), key=lambda c: c.id)
