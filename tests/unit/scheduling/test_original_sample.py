"""The original's sample configuration (docs/scheduler.original-sample.toml) loads, maps
key for key, and places instances: the default, ``nat`` and ``vif3type1`` network
schedulers, and MACs by the host's group (ByHostNodeGroup)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import delete, select

from collector.models import Instance, MacRange, NetworkVifIpLease
from collector.models.networks import ipv4_to_s
from collector.scheduling import handlers
from collector.scheduling import placement_config as config
from collector.scheduling.strategies import host_node, mac_address
from collector.scheduling.strategies import network as vif_plans
from tests.support.paths import ROOT
from workers.demo.world import make

SAMPLE = ROOT / "docs" / "scheduler.original-sample.toml"


@pytest.fixture()
def sample():
    cfg = config.reload_scheduler_config(str(SAMPLE))
    yield cfg
    config.reload_scheduler_config()


def test_the_original_sample_loads_key_for_key(sample):
    std, lb = sample.service_type("std"), sample.service_type("lb")
    by_group = mac_address.ByHostNodeGroup("mr-demomacs", (("hng-shhost", "mr-range1"),))
    assert (std.host_node, std.host_node_ha) == (host_node.LeastUsage(), host_node.LeastUsage())
    assert std.mac_address == lb.mac_address == by_group
    assert std.network.default == vif_plans.VifsRequestParam()
    assert std.network.named["nat"] == vif_plans.NatOneToOne("nw-demo1", "nw-demo2")
    assert std.network.named["vif3type1"] == vif_plans.VifTemplate(
        {"eth0": "nw-demo1", "eth1": "nw-demo2", "eth2": "nw-demo3"})
    assert set(std.network.named) == {"nat", "vif3type1", "vif3type2", "vnet_1_6",
                                      "vnet_1_7", "vnet_7"}
    assert lb.network == vif_plans.VifsRequestParam() and lb.kind == "LbServiceType"
    assert lb.extra == {"image_id": "wmi-demolb", "ssh_key_id": "ssh-demo",
                        "instances_network": "nw-demo1", "management_network": "nw-demo8",
                        "amqp_server_uri": "amqp://example.com/"}
    assert std.extra == {"backup_storage_id": "bkst-demo2"}
    assert sample.mac_address_vendor_id == "525400" and not sample.evacuate_on_node_offline


@pytest.fixture()
def demo(session):
    """The sample's rows: nw-demo1..3, mr-demomacs, mr-range1, hng-shhost with one host."""
    session.execute(delete(MacRange))
    for name, begin in (("demomacs", 0x100), ("range1", 0x200)):
        make.mac_range(session, range_begin=begin, range_end=begin + 0xFF, uuid=name)
    nets = {n: make.network(session, f"10.{90 + n}.0.0/24", uuid=f"demo{n}")
            for n in (1, 2, 3)}
    hv = f"kvm-{secrets.token_hex(3)}"
    grouped = make.host_node(session, hypervisor=hv, offering_cpu_cores=2,
                                    offering_memory_size=2048)
    other = make.host_node(session, hypervisor=hv, offering_cpu_cores=2,
                                  offering_memory_size=1536)
    make.group(session, [grouped], uuid="shhost")
    return {"hv": hv, "nets": nets, "grouped": grouped, "other": other}


def scheduling(session, demo, **params):
    """A std instance waiting for placement (1 core, 1 GB, a 1 GiB local disk)."""
    [cuuid] = make.awaiting_placement(session, 1, make.image(session), hypervisor=demo["hv"],
                                      service_type="std", request_params=params)
    return Instance.by_cuuid(session, cuuid)


def addresses(session, vif):
    return sorted((row.network_id, ipv4_to_s(row.ipv4)) for row in session.scalars(
        select(NetworkVifIpLease).where(NetworkVifIpLease.network_vif_id == vif.id)))


def test_the_original_sample_places(session, sample, demo):
    nets = demo["nets"]
    plain = scheduling(session, demo, vifs={"eth0": {"network": "nw-demo3"}})
    assert handlers.schedule_instance(session, plain.canonical_uuid)["outcome"] == "placed"
    assert plain.host_node_id == demo["grouped"].id  # more free memory
    (vif,) = plain.network_vifs
    assert vif.mac_addr == "525400000200"  # hng-shhost -> mr-range1
    assert addresses(session, vif) == [(nets[3].id, "10.93.0.10")]

    nat = scheduling(session, demo, vifs={"eth0": {}}, network_scheduler="nat")
    handlers.schedule_instance(session, nat.canonical_uuid)
    assert nat.host_node_id == demo["other"].id
    (vif,) = nat.network_vifs
    assert vif.mac_addr == "525400000100"  # not in a paired group -> mr-demomacs
    assert addresses(session, vif) == [(nets[1].id, "10.91.0.10"), (nets[2].id, "10.92.0.10")]

    three = scheduling(session, demo, vifs={"eth0": {}, "eth1": {}, "eth2": {}},
                       network_scheduler="vif3type1")
    handlers.schedule_instance(session, three.canonical_uuid)
    assert [v.network_id for v in three.network_vifs] == [nets[1].id, nets[2].id, nets[3].id]
    assert [addresses(session, v)[0][1] for v in three.network_vifs] == [
        "10.91.0.11", "10.92.0.11", "10.93.0.11"]
