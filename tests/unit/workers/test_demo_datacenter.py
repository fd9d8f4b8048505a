"""``collector seed``: a datacenter to place work on, the same however often it runs."""

from __future__ import annotations

from sqlalchemy import func, select

from collector.ids import new_uuid
from collector.models import HostNode, Image, MacRange, Network
from workers.demo.world.datacenter import seed_datacenter


def test_seed_writes_hosts_of_two_sizes_storage_networks_and_images(session):
    prefix = f"s{new_uuid()[:5]}"
    world = seed_datacenter(session, hosts=4, prefix=prefix)
    hosts = [HostNode.by_cuuid(session, h) for h in world["hosts"]]
    assert [h.node_id for h in hosts] == [f"hva.{prefix}{n}" for n in range(1, 5)]
    assert len({(h.offering_cpu_cores, h.offering_memory_size) for h in hosts}) == 2
    assert world["storage_node_ids"] == [f"sta.{prefix}1"]
    net = Network.by_cuuid(session, world["network"])
    assert net.dhcp_ranges and net.nat_network_id == Network.by_cuuid(
        session, world["nat_network"]).id
    local, shared = (Image.by_cuuid(session, world["images"][k]) for k in ("local", "shared"))
    assert local.is_local_boot and not shared.is_local_boot
    assert session.scalar(select(func.count()).select_from(MacRange)) >= 1


def test_seeding_twice_gives_the_same_datacenter_and_can_grow_it(session):
    prefix = f"s{new_uuid()[:5]}"
    first = seed_datacenter(session, hosts=2, prefix=prefix)
    again = seed_datacenter(session, hosts=2, prefix=prefix)
    assert again == first
    grown = seed_datacenter(session, hosts=3, prefix=prefix)
    assert grown["hosts"][:2] == first["hosts"] and len(grown["hosts"]) == 3
