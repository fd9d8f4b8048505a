"""IP strategies (``IpStrategy``): ``Incremental`` (DHCP ranges, explicit per-network
cursor) and ``SpecifyIP`` (requested addresses); the leases they write, and the
manual-address checks the API uses.

Incremental (spec 4.3.1, with the cursor made explicit as the spec advises):
* addresses come only from the network's DHCP ranges; none left (or no range) ->
  OutOfIpRange;
* ``networks.ip_cursor`` is the last address handed out. ``asc`` searches upward after it,
  then wraps to [0, cursor]; ``desc`` searches downward below it, then [cursor, top].
  No cursor yet: the whole space. Released addresses behind the cursor are therefore not
  reused until the search wraps, and then in address order;
* ranges are read at each allocation (they may be replaced meanwhile; a batch of
  placements reads them once, ``batch_memo.py``), clamped to the
  window and visited in address order (asc by begin, desc by end);
* the network, broadcast, gateway, DNS, DHCP and metadata addresses are skipped and never
  written (the original leased them as RESERVED rows, S16);
* manual leases do not move the cursor.
``ip_leases`` (unique per network and address) stays the single truth of "taken"; an
insert lost to a concurrent writer retries with the next address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from collector.db import dialect_name, insert_all_if_absent, insert_if_absent, matches_any
from collector.errors import (
    DuplicateIPAddress,
    InvalidIPAddress,
    IPAddressNotInSegment,
    IpNotInDhcpRange,
    NetworkSchedulingError,
    OutOfIpRange,
    ReservedIPAddress,
)
from collector.models import ALLOC_AUTO, DhcpRange, IpLease, Network, NetworkVif, NetworkVifIpLease
from collector.models.networks import ipv4_to_s
from collector.scheduling import batch_memo, reservations
from collector.scheduling.gaps import first_free
from collector.scheduling.strategies.catalog import register
from collector.scheduling.strategies.protocols import IpStrategy
from collector.timeutil import utcnow

IPV4_MAX = (1 << 32) - 1
MAX_ATTEMPTS = 16
Window = tuple[int, int]


def reserved_addresses(network: Network) -> frozenset[int]:
    """Addresses never handed out: network, broadcast, gateway, DNS, DHCP, metadata."""
    block = network.ipv4
    out = {int(block.network_address), int(block.broadcast_address)}
    for text in (network.ipv4_gw, network.dns_server, network.dhcp_server,
                 network.metadata_server):
        try:
            out.add(int(ipaddress.IPv4Address(text)))
        except (ValueError, TypeError):
            continue  # unset or not an address: nothing to keep out
    return frozenset(out)


def search_windows(cursor: int | None, direction: str) -> list[Window]:
    """Where to look, in order: after the cursor, then the wrap (pure)."""
    if cursor is None:
        return [(0, IPV4_MAX)]
    if direction == "desc":
        return [(0, cursor - 1), (cursor, IPV4_MAX)]
    return [(cursor + 1, IPV4_MAX), (0, cursor)]


def ranges_in_window(ranges: Iterable[Window], window: Window, direction: str) -> list[Window]:
    """The ranges clamped to the window, in search order (pure)."""
    lo, hi = window
    clamped = [(max(b, lo), min(e, hi)) for b, e in ranges if b <= hi and e >= lo and b <= e]
    if direction == "desc":
        return sorted(clamped, key=lambda r: (-r[1], -r[0]))
    return sorted(clamped)


def _free_in(session: Session, network_id: int, span: Window, direction: str,
             reserved: frozenset[int]) -> int | None:
    lo, hi = span
    while lo <= hi:
        found = first_free(session, IpLease.ipv4, lo, hi, scope=(("network_id", network_id),),
                           descending=direction == "desc")
        if found is None or found not in reserved:
            return found
        if direction == "desc":
            hi = found - 1
        else:
            lo = found + 1
    return None


def next_address(session: Session, network_id: int, ranges: Sequence[Window],
                 cursor: int | None, direction: str, reserved: frozenset[int]) -> int | None:
    for window in search_windows(cursor, direction):
        for span in ranges_in_window(ranges, window, direction):
            found = _free_in(session, network_id, span, direction, reserved)
            if found is not None:
                return found
    return None


def _guard(session: Session, network_id: int, address: int) -> bool:
    """Insert the ``ip_leases`` guard row; False when the address is already taken."""
    return insert_if_absent(session, IpLease, None, network_id=network_id, ipv4=address,
                            description=ipv4_to_s(address)) is not None


def _guard_and_move(session: Session, network_id: int, address: int) -> bool:
    """The guard row, and the network's cursor moved to ``address`` when it was inserted
    (one statement on PostgreSQL); False when the address is already taken."""
    if dialect_name(session) != "postgresql":
        if not _guard(session, network_id, address):
            return False
        session.execute(update(Network).where(Network.id == network_id)
                        .values(ip_cursor=address)
                        .execution_options(synchronize_session=False))
        return True
    now = utcnow()  # timestamps given: a statement nested in a CTE computes no defaults
    guard = (postgresql.insert(IpLease)
             .values(network_id=network_id, ipv4=address, description=ipv4_to_s(address),
                     created_at=now, updated_at=now)
             .on_conflict_do_nothing().returning(IpLease.id).cte("guard"))
    moved = (update(Network).where(Network.id == network_id, exists(select(guard.c.id)))
             .values(ip_cursor=address, updated_at=now).returning(Network.id)
             .execution_options(synchronize_session=False))
    return session.execute(moved).first() is not None


def candidates(ranges: Sequence[Window], cursor: int | None, direction: str,
               reserved: frozenset[int]) -> Iterator[int]:
    """The addresses the search visits, in its order, that are in a range and not
    reserved, taken or not (pure, lazy)."""
    for window in search_windows(cursor, direction):
        for lo, hi in ranges_in_window(ranges, window, direction):
            span = range(hi, lo - 1, -1) if direction == "desc" else range(lo, hi + 1)
            yield from (address for address in span if address not in reserved)


def first_candidate(ranges: Sequence[Window], cursor: int | None, direction: str,
                    reserved: frozenset[int]) -> int | None:
    """The first address the search visits that is in a range and not reserved, taken
    or not (pure): when it is free, it is what ``next_address`` answers."""
    return next(candidates(ranges, cursor, direction, reserved), None)


def _reserve(session: Session, network: Network, ranges: Sequence[Window],
             reserved: frozenset[int], wanted: int, after: int | None
             ) -> tuple[list[int], int, int | None]:
    """The guard rows of the next ``wanted`` candidates past ``after`` (else the cursor),
    in one statement (``reservations.take``)."""
    start = network.ip_cursor if after is None else after
    tried = list(islice(candidates(ranges, start, network.ip_assignment, reserved), wanted))
    if not tried:
        return [], 0, after
    now = utcnow()
    inserted = set(insert_all_if_absent(session, IpLease, None, [
        {"network_id": network.id, "ipv4": address, "description": ipv4_to_s(address),
         "created_at": now, "updated_at": now} for address in tried], IpLease.ipv4))
    return [a for a in tried if a in inserted], len(tried), tried[-1]


def _finish_reserved(network: Network) -> Callable[[Session, list[int]], None]:
    def finish(session: Session, unused: list[int]) -> None:
        if unused:
            session.execute(delete(IpLease).where(IpLease.network_id == network.id,
                                                  IpLease.ipv4.in_(unused)))
        session.execute(update(Network).where(Network.id == network.id)
                        .values(ip_cursor=network.ip_cursor)
                        .execution_options(synchronize_session=False))
    return finish


def _lease_row(session: Session, network: Network, vif: NetworkVif | None,
               address: int) -> NetworkVifIpLease:
    lease = NetworkVifIpLease(network_id=network.id, ipv4=address,
                              description=ipv4_to_s(address), alloc_type=ALLOC_AUTO)
    if vif is not None:
        lease.network_vif = vif  # by relationship: the vif need not be flushed yet
    session.add(lease)
    return lease


def _segment(network: Network) -> str:
    return f"{network.ipv4_network}/{network.prefix_len}"


def lock_networks(session: Session, network_ids: Iterable[int] = (),
                  raw_uuids: Iterable[str] = ()) -> list[Network]:
    """The networks (by id or raw uuid), re-read under a row lock in id order (no deadlock
    between two placements): one allocator per network at a time moves its cursor."""
    ids, uuids = set(network_ids), set(raw_uuids)
    held = batch_memo.memo(session)
    if held is not None:
        locked: dict[int, Network] = held.setdefault("networks", {})
        by_uuid = {n.uuid: n for n in locked.values()}
        if ids <= locked.keys() and uuids <= by_uuid.keys():  # this batch holds them all
            return sorted({*(locked[i] for i in ids), *(by_uuid[u] for u in uuids)},
                          key=lambda n: n.id)
    stmt = select(Network).where(matches_any(session, Network.id, ids)
                                 | matches_any(session, Network.uuid, uuids)) \
        .order_by(Network.id).execution_options(populate_existing=True)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    rows = list(session.scalars(stmt))
    if held is not None:
        held["networks"].update((n.id, n) for n in rows)
    return rows


def dhcp_ranges(session: Session, network_id: int) -> list[Window]:
    """The network's DHCP ranges: read at each allocation, or once per batch (a batch is
    one transaction; its placements see the ranges of its first allocation)."""
    held = batch_memo.memo(session)
    cached = held.setdefault("dhcp", {}) if held is not None else {}
    if network_id not in cached:
        cached[network_id] = [(r.range_begin, r.range_end) for r in session.execute(
            select(DhcpRange.range_begin, DhcpRange.range_end)
            .where(DhcpRange.network_id == network_id))]
    return cached[network_id]


def allocate_incremental(session: Session, network: Network, vif: NetworkVif | None,
                         cursor_locked: bool = False) -> NetworkVifIpLease:
    """``cursor_locked``: the caller holds the network row (``lock_networks``), so its
    ``ip_cursor`` is current."""
    direction = network.ip_assignment
    if direction not in ("asc", "desc"):
        raise NetworkSchedulingError(f"Unsupported IP address assignment: {direction}")
    if cursor_locked:
        cursor = network.ip_cursor
    else:
        cursor = lock_networks(session, [network.id])[0].ip_cursor
    ranges = dhcp_ranges(session, network.id)
    reserved = reserved_addresses(network)
    if cursor_locked:  # in a batch's vif phase: its next address may be reserved already
        address = reservations.take(
            session, ("ip", network.id),
            lambda wanted, after: _reserve(session, network, ranges, reserved, wanted, after),
            _finish_reserved(network))
        if address is not None:
            set_committed_value(network, "ip_cursor", address)  # written by the finish
            return _lease_row(session, network, vif, address)
    # Usually the address right after the cursor is free: try it before asking the
    # database for the first free one (it is the first free one when the guard holds).
    address = first_candidate(ranges, cursor, direction, reserved)
    for _ in range(MAX_ATTEMPTS):
        if address is None:
            break
        if _guard_and_move(session, network.id, address):
            set_committed_value(network, "ip_cursor", address)
            return _lease_row(session, network, vif, address)
        address = next_address(session, network.id, ranges, cursor, direction, reserved)
    raise OutOfIpRange(f"Run out of dynamic IP addresses from the network segment: "
                       f"{_segment(network)}")


def parse_ipv4(address: object) -> int:
    """A dotted IPv4 address as an integer; InvalidIPAddress otherwise."""
    try:
        return int(ipaddress.IPv4Address(address))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise InvalidIPAddress(f"Invalid ipv4 address: {address!r}.") from None


def check_manual_ip(session: Session, network: Network, address: object) -> int:
    """A requested address of ``network``, checked and free; nothing is written.

    InvalidIPAddress, IPAddressNotInSegment, IpNotInDhcpRange, ReservedIPAddress,
    DuplicateIPAddress (taken in this network: other networks may reuse it, S17).
    """
    value = parse_ipv4(address)
    if ipaddress.IPv4Address(value) not in network.ipv4:
        raise IPAddressNotInSegment(f"Address {address} not in segment {_segment(network)}")
    in_range = session.scalar(select(exists().where(
        DhcpRange.network_id == network.id, DhcpRange.range_begin <= value,
        DhcpRange.range_end >= value)))
    if not in_range:
        raise IpNotInDhcpRange(f"Address {address} not in dhcp ranges")
    if value in reserved_addresses(network):
        raise ReservedIPAddress(f"Address {address} is reserved in {network.canonical_uuid}")
    if session.scalar(select(exists().where(IpLease.network_id == network.id,
                                            IpLease.ipv4 == value))):
        raise DuplicateIPAddress(f"IP Address is already leased: {address}")
    return value


def lease_manual_ip(session: Session, network: Network, vif: NetworkVif | None,
                    address: object) -> NetworkVifIpLease:
    value = check_manual_ip(session, network, address)
    if not _guard(session, network.id, value):
        raise DuplicateIPAddress(f"IP Address is already leased: {address}")
    return _lease_row(session, network, vif, value)


@register("ip_address", "Incremental")
@dataclass(frozen=True)
class Incremental(IpStrategy):
    """Requested addresses are honoured (checked); others come after the cursor."""

    def allocate(self, session: Session, network: Network, vif: NetworkVif | None,
                 requested: str | None = None, cursor_locked: bool = False
                 ) -> NetworkVifIpLease:
        if requested:
            return lease_manual_ip(session, network, vif, requested)
        return allocate_incremental(session, network, vif, cursor_locked)


@register("ip_address", "SpecifyIP")
@dataclass(frozen=True)
class SpecifyIP(IpStrategy):
    """Only requested addresses (matched to the vif by name, S17)."""

    def allocate(self, session: Session, network: Network, vif: NetworkVif | None,
                 requested: str | None = None, cursor_locked: bool = False
                 ) -> NetworkVifIpLease:
        if not requested:
            raise NetworkSchedulingError(
                f"SpecifyIP: no address requested in {network.canonical_uuid}")
        return lease_manual_ip(session, network, vif, requested)
