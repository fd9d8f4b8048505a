"""MAC strategies (``MacStrategy``): ``Default`` (ordered scan of the ranges),
``ByHostNodeGroup`` (the range paired with the host's group) and ``SpecifyMacAddress``; the
leases they write, and the manual-MAC checks the API uses.

A MAC strategy is ``allocate(session, requested, vendor_id, host_node_id) -> int`` (the
leased address); a requested MAC is honoured (checked) by every strategy (S19).

Addresses are 48-bit integers in ``mac_leases`` (unique) and 12 zero-padded lowercase hex
digits on the vif (the original dropped leading zeros, S18). A range is vendor_id (24 bits)
plus [range_begin, range_end] (24-bit device part), both ends usable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, cast, delete, exists, func, select
from sqlalchemy.orm import Session

from collector import ids
from collector.db import dialect_name, insert_all_if_absent, insert_if_absent
from collector.errors import (
    DuplicateMacAddress,
    InvalidMacAddress,
    MacNotInRange,
    NetworkSchedulingError,
    OutOfMacRange,
    UnknownMacRange,
)
from collector.models import HostNode, HostNodeGroup, MacLease, MacRange, Tag, TagMapping
from collector.scheduling import batch_memo, reservations
from collector.scheduling.gaps import first_free
from collector.scheduling.strategies.catalog import id_of, id_pairs, option, register
from collector.scheduling.strategies.protocols import MacStrategy

DEVICE_SPAN = 1 << 24
_HEX12 = re.compile(r"^[0-9a-fA-F]{12}$")
_HEX6 = re.compile(r"^[0-9a-fA-F]{6}$")
# A lease lost to a concurrent writer is retried with the next free address.
MAX_ATTEMPTS = 16


def mac_text(mac: int) -> str:
    return f"{mac:012x}"


def parse_mac(text: object, vendor_id: str | None = None) -> int:
    """12 hex digits; 6 hex digits too when ``vendor_id`` is given (vendor + device part)."""
    if isinstance(text, str) and _HEX12.match(text):
        return int(text, 16)
    if vendor_id is not None and isinstance(text, str) and _HEX6.match(text):
        return int(vendor_id + text, 16)
    raise InvalidMacAddress(f"invalid MAC address: {text!r} (12 hex digits expected)")


def _range_holds(mac: int) -> Any:
    device = mac & 0xFF_FFFF
    return and_(MacRange.vendor_id == mac >> 24, MacRange.range_begin <= device,
                MacRange.range_end >= device)


def check_manual_mac(session: Session, text: object, vendor_id: str | None = None) -> int:
    """A requested MAC, checked and not leased: InvalidMacAddress, DuplicateMacAddress,
    MacNotInRange. Nothing is written."""
    mac = parse_mac(text, vendor_id)
    if session.scalar(select(exists().where(MacLease.mac_addr == mac))):
        raise DuplicateMacAddress(f"MAC address {mac_text(mac)} is already leased")
    if not session.scalar(select(exists().where(_range_holds(mac)))):
        raise MacNotInRange(f"no MAC address range includes {mac_text(mac)}")
    return mac


def lease_mac(session: Session, mac: int) -> bool:
    """Insert the lease; False when the address is taken (by a committed or racing writer)."""
    return insert_if_absent(session, MacLease, None, mac_addr=mac) is not None


def lease_manual_mac(session: Session, text: object, vendor_id: str | None = None) -> int:
    mac = check_manual_mac(session, text, vendor_id)
    if not lease_mac(session, mac):
        raise DuplicateMacAddress(f"MAC address {mac_text(mac)} is already leased")
    return mac


def next_free_mac(session: Session, lo: int, hi: int) -> int | None:
    """After the highest leased address of [lo, hi] (one index probe); once the range's
    top is reached, its lowest free address."""
    top = session.scalar(select(func.max(MacLease.mac_addr)).where(
        MacLease.mac_addr >= lo, MacLease.mac_addr <= hi))
    if top is None:
        return lo
    if top < hi:
        return int(top) + 1
    return first_free(session, MacLease.mac_addr, lo, hi)


def allocate_from_ranges(session: Session, range_uuids: Sequence[str] | None = None) -> int:
    """The next free address of the first range that has one, leased: every range by id,
    or only ``range_uuids`` (canonical mr-...) in that order.

    In a batch of placements (``batch_memo.py``) the ranges are locked and read once; each
    later allocation first tries one past the batch's previous lease in that range."""
    held = batch_memo.memo(session)
    key = ("mac", None if range_uuids is None else tuple(range_uuids))
    if held is not None and key in held:
        mac = reservations.take(session, key,
                                lambda wanted, _after: _reserve(session, held, key, wanted),
                                _release)
        if mac is not None:
            return mac
        for lo, hi, after in held[key]:
            mac = after + 1 if after < hi else first_free(session, MacLease.mac_addr, lo, hi)
            leased = _lease_in_range(session, lo, hi, mac)
            if leased is not None:
                held[key] = [(a, b, leased if (a, b) == (lo, hi) else c)
                             for a, b, c in held[key]]
                return leased
        del held[key]  # nothing left after the memo: the full search below says so
    lo = cast(MacRange.vendor_id, BigInteger) * DEVICE_SPAN + MacRange.range_begin
    hi = cast(MacRange.vendor_id, BigInteger) * DEVICE_SPAN + MacRange.range_end
    top = (select(func.max(MacLease.mac_addr)).where(MacLease.mac_addr >= lo,
                                                     MacLease.mac_addr <= hi)
           .scalar_subquery())
    stmt = select(MacRange.uuid, lo.label("lo"), hi.label("hi"), top.label("top")) \
        .order_by(MacRange.id)
    if range_uuids is not None:
        stmt = stmt.where(MacRange.uuid.in_([ids.raw_part(u, MacRange.prefix)
                                             for u in range_uuids]))
    if dialect_name(session) == "postgresql":
        # Schedulers take turns per range set: without this they would all pick the
        # same next address and queue behind each other's insert anyway.
        stmt = stmt.with_for_update(of=MacRange)
    ranges = session.execute(stmt).all()  # locked in id order, whatever the preference
    if range_uuids is not None:
        position = {u: n for n, u in enumerate(range_uuids)}
        ranges.sort(key=lambda r: position[f"mr-{r.uuid}"])
    if not ranges:
        raise OutOfMacRange("No mac address ranges found in the database.")
    for row in ranges:
        # The first try comes from the range query itself (after the highest lease).
        mac = row.lo if row.top is None else row.top + 1 if row.top < row.hi else \
            first_free(session, MacLease.mac_addr, row.lo, row.hi)
        leased = _lease_in_range(session, row.lo, row.hi, mac)
        if leased is not None:
            if held is not None:
                held[key] = [(int(r.lo), int(r.hi), leased if r is row else
                              int(r.lo) - 1 if r.top is None else int(r.top))
                             for r in ranges]
            return leased
    names = ", ".join(f"mr-{r.uuid}" for r in ranges)
    raise OutOfMacRange(f"No available MAC addresses left in the ranges {names}")


def _reserve(session: Session, held: dict[Any, Any], key: Any, wanted: int
             ) -> tuple[list[int], int, None]:
    """The leases of the next ``wanted`` addresses past the batch's last one in the first
    range (memo order) with room above it, in one statement (``reservations.take``)."""
    ranges = held[key]
    for n, (lo, hi, after) in enumerate(ranges):
        if after >= hi:
            continue
        tried = list(range(after + 1, min(hi, after + wanted) + 1))
        inserted = set(insert_all_if_absent(session, MacLease, None,
                                            [{"mac_addr": mac} for mac in tried],
                                            MacLease.mac_addr))
        ranges[n] = (lo, hi, tried[-1])
        return [mac for mac in tried if mac in inserted], len(tried), None
    return [], 0, None


def _release(session: Session, unused: list[int]) -> None:
    if unused:
        session.execute(delete(MacLease).where(MacLease.mac_addr.in_(unused)))


def _lease_in_range(session: Session, lo: int, hi: int, mac: int | None) -> int | None:
    """Lease ``mac``, or the next free address of [lo, hi] when a racing writer took it."""
    for _ in range(MAX_ATTEMPTS):
        if mac is None:
            return None
        if lease_mac(session, int(mac)):
            return int(mac)
        mac = next_free_mac(session, lo, hi)
    return None


def ranges_for_groups(host_groups: frozenset[str], paired: Sequence[tuple[str, str]],
                      default: str | None) -> list[str]:
    """ByHostNodeGroup's ranges to try, in order: those paired with a group of the host, in
    the configured order (the original let the last matching group win, S18), then the
    default."""
    out = [rng for group, rng in paired if group in host_groups]
    if default is not None:
        out.append(default)
    return list(dict.fromkeys(out))


def host_groups(session: Session, host_node_id: int | None) -> frozenset[str]:
    """The host node groups (hng-...) the host belongs to; none without a host."""
    if host_node_id is None:
        return frozenset()
    host = session.scalar(select(HostNode.uuid).where(HostNode.id == host_node_id))
    if host is None:
        return frozenset()
    kind = HostNodeGroup.__mapper_args__["polymorphic_identity"]
    return frozenset(f"hng-{g}" for g in session.scalars(
        select(Tag.uuid).join(TagMapping, TagMapping.tag_id == Tag.id)
        .where(Tag.type_id == kind, TagMapping.uuid == f"hn-{host}")))


@register("mac_address", "Default")
@dataclass(frozen=True)
class Default(MacStrategy):
    """Requested MACs are honoured (checked); others come from the ranges in order."""

    def allocate(self, session: Session, requested: str | None = None,
                 vendor_id: str | None = None, host_node_id: int | None = None) -> int:
        if requested:
            return lease_manual_mac(session, requested)
        return allocate_from_ranges(session)


@register("mac_address", "ByHostNodeGroup")
@dataclass(frozen=True)
class ByHostNodeGroup(MacStrategy):
    """The range paired with the first of the host's groups (configured order) that has a
    free address, else ``default``. Without a host (a vif made before placement) only
    ``default`` applies (the original crashed, S18)."""

    default: str | None = option(id_of("mr"), default=None)
    pairs: tuple[tuple[str, str], ...] = option(id_pairs("hng", "mr"), default=(), key="pair",
                                                first=True)

    def allocate(self, session: Session, requested: str | None = None,
                 vendor_id: str | None = None, host_node_id: int | None = None) -> int:
        if requested:
            return lease_manual_mac(session, requested)
        wanted = ranges_for_groups(host_groups(session, host_node_id), self.pairs,
                                   self.default)
        if not wanted:
            raise UnknownMacRange("No default MAC address range set and no pair matches "
                                  "the groups of the host")
        known = {f"mr-{u}" for u in session.scalars(select(MacRange.uuid).where(
            MacRange.uuid.in_([ids.raw_part(u, MacRange.prefix) for u in wanted])))}
        if self.default is not None and self.default not in known:
            raise UnknownMacRange(f"MAC address range '{self.default}' not found")
        existing = [u for u in wanted if u in known]
        if not existing:
            raise UnknownMacRange(f"MAC address range '{wanted[0]}' not found")
        return allocate_from_ranges(session, existing)


@register("mac_address", "SpecifyMacAddress")
@dataclass(frozen=True)
class SpecifyMacAddress(MacStrategy):
    """Only requested MACs (6 digits take the configured vendor id)."""

    def allocate(self, session: Session, requested: str | None = None,
                 vendor_id: str | None = None, host_node_id: int | None = None) -> int:
        if not requested:
            raise NetworkSchedulingError("SpecifyMacAddress: the vif has no mac_addr")
        return lease_manual_mac(session, requested, vendor_id)
