"""Storage placement for shared volumes: the LeastUsage and FindFirst strategies and the
claim loop.

``associate`` creates the device row of the chosen node's kind (iSCSI or NFS) and sets the
volume's ``volume_type``, as the original's ``associate_volume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from collector.db import dialect_name
from collector.errors import InsufficientCapacity, NoMatchingStorageNode
from collector.models import ISCSI, NFS, IscsiVolume, NfsVolume, Volume
from collector.scheduling import capacity
from collector.scheduling.candidates import StorageCandidate
from collector.scheduling.strategies.catalog import no_other_keys, register

MAX_ROUNDS = 4


def least_usage(candidates: Sequence[StorageCandidate], size_bytes: int
                ) -> list[StorageCandidate]:
    """Online nodes with ``size_bytes`` free, most free first, ties by lowest id."""
    online = [c for c in candidates if c.online]
    if not online:
        raise NoMatchingStorageNode("no storage node is online")
    fitting = [c for c in online if c.free_disk_bytes >= size_bytes]
    if not fitting:
        raise InsufficientCapacity(f"no storage node has {size_bytes} bytes free")
    return sorted(fitting, key=lambda c: (-c.free_disk_bytes, c.id))


def find_first(candidates: Sequence[StorageCandidate], size_bytes: int
               ) -> list[StorageCandidate]:
    """Online nodes with ``size_bytes`` free, by id (the original's FindFirst was dead code
    and ignored online state and capacity, S5)."""
    online = [c for c in candidates if c.online]
    if not online:
        raise NoMatchingStorageNode("no storage node is online")
    fitting = [c for c in online if c.free_disk_bytes >= size_bytes]
    if not fitting:
        raise InsufficientCapacity(f"no storage node has {size_bytes} bytes free")
    return sorted(fitting, key=lambda c: c.id)


@dataclass(frozen=True)
class LeastUsage:
    order: str = "free"

    def rank(self, candidates: Sequence[StorageCandidate], size_bytes: int
             ) -> list[StorageCandidate]:
        return least_usage(candidates, size_bytes)


@dataclass(frozen=True)
class FindFirst:
    order: str = "id"

    def rank(self, candidates: Sequence[StorageCandidate], size_bytes: int
             ) -> list[StorageCandidate]:
        return find_first(candidates, size_bytes)


@register("storage_node", "FindFirst")
def _find_first(options: dict[str, Any], where: str) -> FindFirst:
    no_other_keys(options, (), where)
    return FindFirst()


@register("storage_node", "LeastUsage")
def _least_usage(options: dict[str, Any], where: str) -> LeastUsage:
    no_other_keys(options, (), where)
    return LeastUsage()


def place_storage(session: Session, volume: Volume, strategy: Any) -> StorageCandidate:
    """Claim room for the volume on the best node that still has it, and associate it."""
    size = int(volume.size)
    tried: tuple[int, ...] = ()
    passes = (True, False) if dialect_name(session) == "postgresql" else (False,)
    for _ in range(MAX_ROUNDS):
        candidates = capacity.storage_candidates(session, size, exclude_ids=tried,
                                                 order=getattr(strategy, "order", "free"))
        if not candidates:
            break
        for skip_locked in passes:
            for candidate in strategy.rank(candidates, size):
                if capacity.claim_storage(session, candidate.id, volume,
                                          skip_locked=skip_locked):
                    associate(session, volume, candidate)
                    return candidate
        tried += tuple(c.id for c in candidates)
    if not capacity.online_storage_exists(session):
        raise NoMatchingStorageNode(f"no storage node is online for {volume.canonical_uuid}")
    raise InsufficientCapacity(f"no storage node has {size} bytes free for "
                               f"{volume.canonical_uuid}")


def associate(session: Session, volume: Volume, node: StorageCandidate) -> None:
    if node.storage_type == NFS:
        session.add(NfsVolume(id=volume.id, nfs_storage_node_id=node.id,
                              path=volume.canonical_uuid))
        volume.volume_type = NFS
    else:
        session.add(IscsiVolume(id=volume.id, iscsi_storage_node_id=node.id,
                                path=volume.canonical_uuid))
        volume.volume_type = ISCSI
