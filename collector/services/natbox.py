"""``natbox-collector``: NAT routes for NAT boxes of one DC network.

get_network_route(route_id, dc_network_name) -> {id, outer_ipv4, inner_ipv4} when the
    route's inner network belongs to that DC network, else null (deleted routes included:
    the box needs them to remove a flow)
get_alive_network_routes(dc_network_name) -> [{id, outer_ipv4, inner_ipv4}] of alive
    routes whose leases are alive (the original returned the DC network's id as ``id``)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased, selectinload

from collector.db import EAGER_CHUNK
from collector.errors import UnknownNetworkRouteID
from collector.models import DcNetwork, Network, NetworkRoute, NetworkVifIpLease


def _route_hash(route: NetworkRoute) -> dict[str, Any]:
    return {"id": route.id, "outer_ipv4": route.outer_lease.ipv4_s,
            "inner_ipv4": route.inner_lease.ipv4_s}


def get_network_route(session: Session, route_id: int,
                      dc_network_name: str) -> dict[str, Any] | None:
    route = session.scalars(select(NetworkRoute).where(NetworkRoute.id == route_id).options(
        selectinload(NetworkRoute.inner_lease, chunksize=EAGER_CHUNK).selectinload(NetworkVifIpLease.network, chunksize=EAGER_CHUNK)
        .selectinload(Network.dc_network, chunksize=EAGER_CHUNK), selectinload(NetworkRoute.outer_lease, chunksize=EAGER_CHUNK))).first()
    if route is None:
        raise UnknownNetworkRouteID(f"unknown network route: {route_id}")
    inner = route.inner_lease
    dc = inner.network.dc_network if inner and inner.network else None
    if dc is None or dc.name != dc_network_name or route.outer_lease is None:
        return None
    return _route_hash(route)


def get_alive_network_routes(session: Session, dc_network_name: str) -> list[dict[str, Any]]:
    inner, outer = aliased(NetworkVifIpLease), aliased(NetworkVifIpLease)
    routes = session.scalars(
        select(NetworkRoute)
        .join(inner, NetworkRoute.inner_lease_id == inner.id)
        .join(outer, NetworkRoute.outer_lease_id == outer.id)
        .join(Network, inner.network_id == Network.id)
        .join(DcNetwork, Network.dc_network_id == DcNetwork.id)
        .where(NetworkRoute.deleted_at.is_(None), inner.deleted_at.is_(None),
               outer.deleted_at.is_(None), DcNetwork.name == dc_network_name)
        .order_by(NetworkRoute.id)
        .options(selectinload(NetworkRoute.inner_lease, chunksize=EAGER_CHUNK), selectinload(NetworkRoute.outer_lease, chunksize=EAGER_CHUNK)))
    return [_route_hash(r) for r in routes]
