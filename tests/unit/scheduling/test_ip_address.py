"""IP allocation on a real database: the Incremental rules of spec 4.3.1, SpecifyIP checks."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import delete, func, select

from collector import errors
from collector.models import DhcpRange, IpLease, Network
from collector.models.networks import ipv4_to_i
from collector.scheduling import placement
from collector.scheduling.gaps import first_free
from collector.scheduling.strategies import ip_address
from collector.scheduling.teardown import release_ip_lease
from collector.timeutil import utcnow
from workers.demo.world import make

_networks = itertools.count()


def make_net(session, ranges, **columns):
    """A /24 (gateway .1, dns+dhcp .2, metadata .3) with exactly ``ranges`` (last octets)."""
    n = next(_networks)
    prefix = f"10.{200 + n // 256}.{n % 256}"
    net = make.network(session, f"{prefix}.0/24", **columns)
    session.execute(delete(DhcpRange).where(DhcpRange.network_id == net.id))
    set_ranges(session, net, ranges)
    net.test_prefix = prefix
    return net


def set_ranges(session, net, ranges):
    session.execute(delete(DhcpRange).where(DhcpRange.network_id == net.id))
    base = ipv4_to_i(net.ipv4_network)
    for lo, hi in ranges:
        session.add(DhcpRange(network_id=net.id, range_begin=base + lo, range_end=base + hi))
    session.flush()


def alloc(session, net):
    """Last octet of the next Incremental address."""
    lease = ip_address.allocate_incremental(session, net, None)
    session.flush()
    return lease.ipv4 & 0xFF


def allocs(session, net, n):
    return [alloc(session, net) for _ in range(n)]


def release(session, net, octet):
    from collector.models import NetworkVifIpLease

    lease = session.scalars(select(NetworkVifIpLease).where(
        NetworkVifIpLease.network_id == net.id, NetworkVifIpLease.deleted_at.is_(None),
        NetworkVifIpLease.ipv4 == ipv4_to_i(net.ipv4_network) + octet)).one()
    release_ip_lease(session, lease, utcnow())
    session.flush()


def test_first_address_is_the_lowest_usable_of_the_lowest_range(session):
    net = make_net(session, [(100, 110), (20, 30)])
    assert alloc(session, net) == 20


def test_reserved_addresses_inside_a_range_are_skipped_without_being_written(session):
    net = make_net(session, [(0, 6)])  # .0 network, .1 gateway, .2 dns/dhcp, .3 metadata
    assert allocs(session, net, 3) == [4, 5, 6]
    rows = session.scalar(select(func.count()).select_from(IpLease)
                          .where(IpLease.network_id == net.id))
    assert rows == 3  # only the three handed out: reserved addresses left no row (S16)


def test_the_broadcast_address_is_reserved_too(session):
    net = make_net(session, [(253, 255)])
    assert allocs(session, net, 2) == [253, 254]
    with pytest.raises(errors.OutOfIpRange):
        alloc(session, net)


def test_each_allocation_takes_the_next_free_address_after_the_cursor(session):
    net = make_net(session, [(10, 40)])
    assert allocs(session, net, 2) == [10, 11]
    ip_address.lease_manual_ip(session, net, None, f"{net.test_prefix}.12")
    ip_address.lease_manual_ip(session, net, None, f"{net.test_prefix}.30")
    assert allocs(session, net, 2) == [13, 14]  # leased .12 skipped; manual .30 moved nothing


def test_a_full_range_passes_on_to_the_next_range(session):
    net = make_net(session, [(20, 21), (10, 11)])
    assert allocs(session, net, 4) == [10, 11, 20, 21]
    with pytest.raises(errors.OutOfIpRange, match=r"segment: 10\.\d+\.\d+\.0/24"):
        alloc(session, net)


def test_wraparound_hands_out_released_addresses_in_address_order(session):
    net = make_net(session, [(10, 14)])
    assert allocs(session, net, 5) == [10, 11, 12, 13, 14]
    release(session, net, 12)
    release(session, net, 10)
    assert allocs(session, net, 2) == [10, 12]
    with pytest.raises(errors.OutOfIpRange):
        alloc(session, net)


def test_released_addresses_behind_the_cursor_are_not_reused_until_the_wrap(session):
    net = make_net(session, [(10, 15)])
    assert allocs(session, net, 3) == [10, 11, 12]
    release(session, net, 11)
    release(session, net, 12)  # the newest: the original rewound its cursor here (S16)
    assert allocs(session, net, 3) == [13, 14, 15]
    assert allocs(session, net, 2) == [11, 12]


def test_dhcp_ranges_replaced_between_allocations(session):
    net = make_net(session, [(10, 20)])
    assert allocs(session, net, 2) == [10, 11]
    set_ranges(session, net, [(100, 110)])
    assert alloc(session, net) == 100
    set_ranges(session, net, [(50, 60), (5, 8)])  # all behind the cursor: wrap to the lowest
    assert allocs(session, net, 2) == [5, 6]


def test_no_dhcp_range_is_out_of_ip_range(session):
    net = make_net(session, [])
    with pytest.raises(errors.OutOfIpRange, match="Run out of dynamic IP addresses"):
        alloc(session, net)


def test_desc_hands_out_downward_from_the_top_then_wraps(session):
    net = make_net(session, [(10, 12), (20, 22)], ip_assignment="desc")
    assert allocs(session, net, 4) == [22, 21, 20, 12]
    release(session, net, 21)
    assert allocs(session, net, 2) == [11, 10]
    assert alloc(session, net) == 21  # wrapped: above the cursor, highest first
    with pytest.raises(errors.OutOfIpRange):
        alloc(session, net)


def test_desc_skips_the_broadcast_address(session):
    net = make_net(session, [(250, 255)], ip_assignment="desc")
    assert alloc(session, net) == 254


def test_an_unsupported_assignment_is_refused(session):
    net = make_net(session, [(10, 20)], ip_assignment="random")
    with pytest.raises(errors.NetworkSchedulingError, match="Unsupported IP address assignment"):
        alloc(session, net)


def test_each_network_has_its_own_cursor(session):
    a, b = make_net(session, [(10, 20)]), make_net(session, [(10, 20)])
    assert [alloc(session, a), alloc(session, a), alloc(session, b)] == [10, 11, 10]
    assert session.get(Network, a.id).ip_cursor == ipv4_to_i(a.ipv4_network) + 11


def test_wrong_argument_types_are_invalid_argument(session):
    net = make_net(session, [(10, 20)])
    with pytest.raises(errors.InvalidArgument):
        placement.lease_ip(session, "nw-demo1")
    with pytest.raises(errors.InvalidArgument):
        placement.lease_ip(session, net, vif="vif-1")
    with pytest.raises(errors.InvalidArgument):
        placement.lease_ip(session, net, requested=167772170)
    assert placement.lease_ip(session, net).ipv4 & 0xFF == 10


def test_first_free_finds_the_gap_after_a_long_leased_run(session):
    net = make_net(session, [(1, 254)])
    base = ipv4_to_i(net.ipv4_network)
    session.add_all([IpLease(network_id=net.id, ipv4=base + i) for i in range(1, 201)])
    session.flush()
    assert first_free(session, IpLease.ipv4, base + 1, base + 254,
                      scope=(("network_id", net.id),)) == base + 201
    assert first_free(session, IpLease.ipv4, base + 1, base + 200,
                      scope=(("network_id", net.id),)) is None
    assert first_free(session, IpLease.ipv4, base + 1, base + 200, descending=True,
                      scope=(("network_id", net.id),)) is None
    assert first_free(session, IpLease.ipv4, base + 1, base + 254, descending=True,
                      scope=(("network_id", net.id),)) == base + 254


# --- SpecifyIP / manual addresses -------------------------------------------------------------

def test_manual_address_checks_in_order(session):
    net = make_net(session, [(1, 100)])
    p = net.test_prefix
    with pytest.raises(errors.InvalidIPAddress):
        ip_address.check_manual_ip(session, net, "10.0.0.300")
    with pytest.raises(errors.InvalidIPAddress):
        ip_address.check_manual_ip(session, net, None)
    with pytest.raises(errors.IPAddressNotInSegment):
        ip_address.check_manual_ip(session, net, "192.0.2.5")
    with pytest.raises(errors.IpNotInDhcpRange):
        ip_address.check_manual_ip(session, net, f"{p}.150")
    with pytest.raises(errors.ReservedIPAddress):  # the gateway: the original handed it out (S17)
        ip_address.check_manual_ip(session, net, f"{p}.1")
    ip_address.lease_manual_ip(session, net, None, f"{p}.50")
    with pytest.raises(errors.DuplicateIPAddress):
        ip_address.check_manual_ip(session, net, f"{p}.50")
    with pytest.raises(errors.DuplicateIPAddress):
        ip_address.lease_manual_ip(session, net, None, f"{p}.50")


def test_the_same_manual_address_is_free_in_another_network(session):
    a = make_net(session, [(1, 100)])
    b = make.network(session, f"{a.test_prefix}.0/24")  # same segment, other network
    ip_address.lease_manual_ip(session, a, None, f"{a.test_prefix}.50")
    assert ip_address.lease_manual_ip(session, b, None, f"{a.test_prefix}.50").network_id == b.id


def test_specify_ip_strategy_needs_a_requested_address(session):
    net = make_net(session, [(10, 20)])
    strategy = ip_address.SpecifyIP()
    with pytest.raises(errors.NetworkSchedulingError, match="SpecifyIP"):
        strategy.allocate(session, net, None)
    assert strategy.allocate(session, net, None, f"{net.test_prefix}.15").ipv4 & 0xFF == 15
