"""Column-level reads for the big per-node documents.

Documents covering every vif of a node read a few columns of thousands of rows; plain
(Core) selects of just those columns cost a fraction of hydrating ORM objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from collector.db import EAGER_CHUNK
from collector.models import NetworkVifIpLease
from collector.models.networks import ipv4_to_s


def chunked_rows(session: Session, keys: Iterable[Any],
                 query: Callable[[list[Any]], Select]) -> Iterator[Row]:
    """Rows of ``query(chunk)`` over the keys in chunks, within bound-parameter limits."""
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), EAGER_CHUNK):
        yield from session.execute(query(ordered[start:start + EAGER_CHUNK]))


class AliveLeases:
    """Alive IP leases of some vifs, oldest first: ``(network id, ipv4 int)`` per vif."""

    def __init__(self, session: Session, vif_ids: Iterable[int]) -> None:
        self.by_vif: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for vif_id, network_id, ipv4 in chunked_rows(session, vif_ids, lambda chunk: select(
                NetworkVifIpLease.network_vif_id, NetworkVifIpLease.network_id,
                NetworkVifIpLease.ipv4)
                .where(NetworkVifIpLease.network_vif_id.in_(chunk),
                       NetworkVifIpLease.deleted_at.is_(None))
                .order_by(NetworkVifIpLease.id)):
            self.by_vif[vif_id].append((network_id, ipv4))

    def first_in(self, vif_id: int, network_id: int | None) -> str | None:
        """The vif's first alive address in that network (its own, or its NAT network)."""
        if network_id is None:
            return None
        return next((ipv4_to_s(ip) for net, ip in self.by_vif.get(vif_id, ())
                     if net == network_id), None)
