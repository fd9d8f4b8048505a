"""Vifs, MAC and IP leases through the network strategy, on a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from collector.errors import (
    DuplicateIPAddress,
    DuplicateMacAddress,
    InvalidMacAddress,
    MacNotInRange,
    NetworkSchedulingError,
    OutOfMacRange,
    UnknownNetworkID,
)
from collector.models import MacLease, MacRange, NetworkVifIpLease, NetworkVifMonitor
from collector.models.networks import ipv4_to_s
from collector.scheduling import vifs as network
from collector.scheduling.strategies import mac_address
from workers.demo.world import make

VENDOR = 0x00AB00  # a leading zero nibble: the original printed 11 digits here (S18)


@pytest.fixture()
def mac_range(session):
    """Only this test's MAC ranges exist (inside the test's transaction)."""
    session.execute(delete(MacRange))
    return make.mac_range(session, VENDOR, range_end=0xFFFF)


def mac(device, vendor=VENDOR):
    return (vendor << 24) | device


def new_instance(session, vifs, **params):
    inst = make.instance(session, state="scheduling",
                                request_params={"vifs": vifs, **params})
    return inst


def addresses(session, vif):
    return sorted((lease.network_id, ipv4_to_s(lease.ipv4)) for lease in session.scalars(
        select(NetworkVifIpLease).where(NetworkVifIpLease.network_vif_id == vif.id,
                                        NetworkVifIpLease.deleted_at.is_(None))))


# --- MAC Default / SpecifyMacAddress ---------------------------------------------------------

def test_default_mac_is_twelve_zero_padded_hex_digits(session, mac_range):
    assert mac_address.mac_text(mac_address.allocate_from_ranges(session)) == "00ab00000001"


def test_default_scans_ranges_by_id_and_hands_out_both_ends(session):
    session.execute(delete(MacRange))
    make.mac_range(session, VENDOR, 5, 6)
    make.mac_range(session, VENDOR, 0, 1)
    got = [mac_address.allocate_from_ranges(session) & 0xFFFFFF for _ in range(4)]
    assert got == [5, 6, 0, 1]  # the original never gave the last one of a range (S18)
    with pytest.raises(OutOfMacRange, match="No available MAC addresses left"):
        mac_address.allocate_from_ranges(session)


def test_no_mac_range_is_out_of_mac_range(session):
    session.execute(delete(MacRange))
    with pytest.raises(OutOfMacRange, match="No mac address ranges"):
        mac_address.allocate_from_ranges(session)


def test_mac_leases_inside_the_range_are_skipped_and_freed_ones_reused_at_the_top(session):
    session.execute(delete(MacRange))
    make.mac_range(session, VENDOR, 1, 4)
    session.add(MacLease(mac_addr=mac(2)))
    session.flush()
    assert [mac_address.allocate_from_ranges(session) & 0xFF for _ in range(2)] == [3, 4]
    assert mac_address.allocate_from_ranges(session) & 0xFF == 1  # top reached: lowest free
    session.execute(delete(MacLease).where(MacLease.mac_addr == mac(3)))
    assert mac_address.allocate_from_ranges(session) & 0xFF == 3
    with pytest.raises(OutOfMacRange):
        mac_address.allocate_from_ranges(session)


def test_manual_mac_checks(session, mac_range):
    for bad in ("00ab0000001", "00ab000000zz", "00:ab:00:00:00:01", "000001", 0xAB000001, None):
        with pytest.raises(InvalidMacAddress):
            mac_address.check_manual_mac(session, bad)
    with pytest.raises(MacNotInRange):
        mac_address.check_manual_mac(session, "00ab00ff0000")
    with pytest.raises(MacNotInRange):
        mac_address.check_manual_mac(session, "525400000001")
    assert mac_address.lease_manual_mac(session, "00AB00000010") == mac(0x10)
    with pytest.raises(DuplicateMacAddress):
        mac_address.check_manual_mac(session, "00ab00000010")


def test_specify_mac_address_takes_six_digits_with_the_vendor_and_needs_one(session, mac_range):
    strategy = mac_address.SpecifyMacAddress()
    assert strategy.allocate(session, "000020", "00ab00") == mac(0x20)
    with pytest.raises(NetworkSchedulingError, match="no mac_addr"):
        strategy.allocate(session, None, "00ab00")


# --- vifs through the network strategy ---------------------------------------------------------

def test_empty_vifs_make_no_vif(session, mac_range):
    assert network.create_vifs(session, new_instance(session, {})) == []


def test_one_vif_gets_a_mac_and_the_first_address(session, mac_range):
    net = make.network(session, "10.31.0.0/24")
    (vif,) = network.create_vifs(session, new_instance(session, {"eth0": {"network":
                                                                          net.canonical_uuid}}))
    assert (vif.device_index, vif.mac_addr, vif.network_id) == (0, "00ab00000001", net.id)
    assert addresses(session, vif) == [(net.id, "10.31.0.10")]


def test_two_vifs_on_two_networks(session, mac_range):
    a, b = make.network(session, "10.32.0.0/24"), make.network(session,
                                                                             "10.33.0.0/24")
    inst = new_instance(session, {"eth0": {"network": a.canonical_uuid},
                                  "eth1": {"index": 1, "network": b.canonical_uuid}})
    first, second = network.create_vifs(session, inst)
    assert (first.device_index, second.device_index) == (0, 1)
    assert first.mac_addr != second.mac_addr
    assert addresses(session, first) == [(a.id, "10.32.0.10")]
    assert addresses(session, second) == [(b.id, "10.33.0.10")]


def test_a_vif_without_network_has_no_address(session, mac_range):
    (vif,) = network.create_vifs(session, new_instance(session, {"eth0": {}}))
    assert vif.network_id is None and addresses(session, vif) == []


def test_an_unknown_network_is_refused(session, mac_range):
    inst = new_instance(session, {"eth0": {"network": "nw-zzzzzzzz"}})
    with pytest.raises(NetworkSchedulingError, match="Network 'nw-zzzzzzzz' doesn't exist."):
        network.create_vifs(session, inst)


@pytest.mark.parametrize("vifs", ["{", ["eth0"], {"eth0": "nw-x"}, {"eth0": {"network": "x"}}])
def test_malformed_vifs_are_refused(session, mac_range, vifs):
    with pytest.raises(NetworkSchedulingError):
        network.create_vifs(session, new_instance(session, vifs))


def test_nat_address_comes_from_the_nat_network(session, mac_range):
    inside, outside = (make.network(session, "10.34.0.0/24"),
                       make.network(session, "192.168.34.0/24"))
    inst = new_instance(session, {"eth0": {"network": inside.canonical_uuid,
                                           "nat_network": outside.canonical_uuid}})
    (vif,) = network.create_vifs(session, inst)
    assert addresses(session, vif) == sorted([(inside.id, "10.34.0.10"),
                                              (outside.id, "192.168.34.10")])  # S15


def test_requested_mac_and_addresses_are_honoured(session, mac_range):
    inside, outside = (make.network(session, "10.35.0.0/24"),
                       make.network(session, "192.168.35.0/24"))
    inst = new_instance(session, {
        "eth0": {"network": inside.canonical_uuid, "mac_addr": "00ab0000abcd",
                 "ipv4_addr": "10.35.0.77", "nat_network": outside.canonical_uuid,
                 "nat_ipv4_addr": "192.168.35.78"},
        "eth1": {"network": inside.canonical_uuid}})
    first, second = network.create_vifs(session, inst)
    assert first.mac_addr == "00ab0000abcd"  # S19: the original dropped it
    assert addresses(session, first) == sorted([(inside.id, "10.35.0.77"),
                                                (outside.id, "192.168.35.78")])
    assert addresses(session, second) == [(inside.id, "10.35.0.10")]  # S17: no need for all


def test_security_groups_per_vif_or_from_the_request(session, mac_range):
    g1, g2 = make.security_group(session), make.security_group(session)
    inst = new_instance(session, {"eth0": {"security_groups": g1.canonical_uuid},
                                  "eth1": {}}, security_groups=[g2.canonical_uuid, ""])
    first, second = network.create_vifs(session, inst)
    assert [g.id for g in first.security_groups] == [g1.id]  # S23: per-vif groups win
    assert [g.id for g in second.security_groups] == [g2.id]
    bad = new_instance(session, {"eth0": {"security_groups": ["sg-zzzzzzzz"]}})
    with pytest.raises(NetworkSchedulingError, match="Unknown security group"):
        network.create_vifs(session, bad)


def test_monitors_pair_with_their_vif_by_name(session, mac_range):
    inst = new_instance(session, {
        "eth1": {"index": 1, "monitors": [{"title": "web", "protocol": "http", "uuid": "x"}]},
        "eth0": {"index": 0}})
    first, second = network.create_vifs(session, inst)
    session.flush()
    monitors = session.scalars(select(NetworkVifMonitor).where(
        NetworkVifMonitor.network_vif_id.in_([first.id, second.id]))).all()
    assert [(m.network_vif_id, m.title, m.params) for m in monitors] == \
        [(second.id, "web", {"protocol": "http"})]  # the uuid key is not copied (S28)


def test_check_manual_addresses_refuses_before_anything_is_written(session, mac_range):
    net = make.network(session, "10.36.0.0/24")
    nw = net.canonical_uuid
    network.check_manual_addresses(session, {"eth0": {"network": nw, "ipv4_addr": "10.36.0.50",
                                                      "mac_addr": "00ab00000050"}})
    assert session.scalars(select(MacLease).where(MacLease.mac_addr == mac(0x50))).first() \
        is None
    with pytest.raises(DuplicateIPAddress):
        network.check_manual_addresses(session, {
            "eth0": {"network": nw, "ipv4_addr": "10.36.0.50"},
            "eth1": {"network": nw, "ipv4_addr": "10.36.0.50"}})
    with pytest.raises(DuplicateMacAddress):
        network.check_manual_addresses(session, {"eth0": {"mac_addr": "00ab00000050"},
                                                 "eth1": {"mac_addr": "00ab00000050"}})
    with pytest.raises(UnknownNetworkID):
        network.check_manual_addresses(session, {"eth0": {"ipv4_addr": "10.36.0.50"}})
    with pytest.raises(UnknownNetworkID):
        network.check_manual_addresses(session, {"eth0": {"network": "nw-zzzzzzzz",
                                                          "ipv4_addr": "10.36.0.50"}})


def test_parse_vifs_for_the_api(session):
    from collector.errors import InvalidParameter

    assert network.parse_vifs(None) == {} and network.parse_vifs('{"eth0": {}}') == {"eth0": {}}
    with pytest.raises(InvalidParameter):
        network.parse_vifs('["eth0"]')
