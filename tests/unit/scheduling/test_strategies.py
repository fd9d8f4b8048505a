"""Strategies as pure rankings and plans over candidate snapshots (no database)."""

from __future__ import annotations

import pytest

from collector.errors import (
    InsufficientCapacity,
    NetworkSchedulingError,
    NoMatchingHostNode,
    NoMatchingStorageNode,
)
from collector.scheduling import vifs as network
from collector.scheduling.candidates import VifPlan
from collector.scheduling.strategies import host_node, ip_address, storage_node
from tests.support.scheduling import GB, host, node, request


def ids(hosts):
    return [h.id for h in hosts]


# --- host LeastUsage ---------------------------------------------------------------------

def test_least_usage_memory_orders_by_free_memory_then_lowest_id():
    hosts = [host(3, free_mem=4096), host(1, free_mem=8192), host(2, free_mem=8192)]
    assert ids(host_node.LeastUsage().rank(hosts, request())) == [1, 2, 3]


def test_least_usage_cpu_orders_by_free_cores_then_lowest_id():
    hosts = [host(1, free_cpu=4, free_mem=9000), host(2, free_cpu=12), host(3, free_cpu=12)]
    assert ids(host_node.LeastUsage("cpu").rank(hosts, request())) == [2, 3, 1]
    assert host_node.LeastUsage("cpu").order == "cpu"


@pytest.mark.parametrize("excluded", [
    dict(online=False), dict(scheduling_enabled=False), dict(hypervisor="lxc"),
    dict(arch="x86"),  # exact arch: an x86 image never lands on an x86_64 host (S11)
], ids=["offline", "disabled", "other-hypervisor", "other-arch"])
def test_least_usage_takes_only_schedulable_matching_hosts(excluded):
    hosts = [host(1, free_mem=16000, **excluded), host(2, free_mem=2048)]
    assert ids(host_node.LeastUsage().rank(hosts, request())) == [2]


@pytest.mark.parametrize("short", [dict(free_cpu=1), dict(free_mem=1024),
                                   dict(free_disk=5 * GB)], ids=["cpu", "memory", "disk"])
def test_least_usage_skips_hosts_short_of_cpu_memory_or_local_disk(short):
    hosts = [host(1, **{"free_mem": 16000, **short}), host(2)]
    assert ids(host_node.LeastUsage().rank(hosts, request())) == [2]


def test_least_usage_no_matching_host_vs_no_room():
    with pytest.raises(NoMatchingHostNode, match="x86_64 kvm"):
        host_node.LeastUsage().rank([host(1, hypervisor="lxc")], request())
    with pytest.raises(InsufficientCapacity):
        host_node.LeastUsage().rank([host(1, free_cpu=1)], request())
    with pytest.raises(NoMatchingHostNode):
        host_node.LeastUsage().rank([], request())


def test_exactly_full_is_a_fit():
    exactly_full = host(1, free_cpu=2, free_mem=2048, free_disk=10 * GB)
    assert ids(host_node.LeastUsage().rank([exactly_full], request())) == [1]


# --- host FindFirst and SpecifyNode --------------------------------------------------------

def test_find_first_is_the_first_fitting_schedulable_host_by_id():
    hosts = [host(4), host(2, free_cpu=0), host(3, online=False), host(5)]
    assert ids(host_node.FindFirst().rank(hosts, request())) == [4, 5]
    with pytest.raises(InsufficientCapacity):
        host_node.FindFirst().rank([host(1, free_cpu=0)], request())


@pytest.mark.parametrize("param", ["host_id", "host_pool_id", "host_node_id"])
def test_specify_node_takes_the_requested_host(param):
    hosts = [host(1), host(2)]
    req = request(request_params={param: "hn-host0002"})
    assert ids(host_node.SpecifyNode().rank(hosts, req)) == [2]


def test_specify_node_param_precedence_is_host_id_then_pool_then_node():
    req = request(request_params={"host_node_id": "hn-host0003", "host_pool_id": "hn-host0002",
                                  "host_id": None})
    assert host_node.specified_host(req) == "hn-host0002"


def test_specify_node_requires_the_param_an_online_host_and_room():
    with pytest.raises(NoMatchingHostNode, match="host_id"):
        host_node.SpecifyNode().rank([host(1)], request())
    with pytest.raises(NoMatchingHostNode, match="unknown"):
        host_node.SpecifyNode().rank([host(1)], request(request_params={"host_id": "hn-zzzz"}))
    offline = request(request_params={"host_id": "hn-host0001"})
    with pytest.raises(NoMatchingHostNode, match="not online"):
        host_node.SpecifyNode().rank([host(1, online=False)], offline)
    with pytest.raises(InsufficientCapacity):
        host_node.SpecifyNode().rank([host(1, free_mem=100)], offline)
    with pytest.raises(NoMatchingHostNode):
        host_node.SpecifyNode().rank([host(1, arch="x86")], offline)


# --- storage LeastUsage -------------------------------------------------------------------

def test_storage_least_usage_most_free_first_ties_by_id_offline_and_full_skipped():
    nodes = [node(4, 50 * GB), node(3, 500 * GB), node(2, 500 * GB), node(1, 900 * GB, False),
             node(5, 5 * GB)]
    assert [n.id for n in storage_node.LeastUsage().rank(nodes, 10 * GB)] == [2, 3, 4]


def test_storage_least_usage_errors():
    with pytest.raises(NoMatchingStorageNode):
        storage_node.LeastUsage().rank([node(1, GB, online=False)], GB)
    with pytest.raises(InsufficientCapacity):
        storage_node.LeastUsage().rank([node(1, GB)], 2 * GB)


# --- IP Incremental search order (pure part) ------------------------------------------------

def test_search_windows_asc_after_the_cursor_then_wrap():
    assert ip_address.search_windows(None, "asc") == [(0, ip_address.IPV4_MAX)]
    assert ip_address.search_windows(100, "asc") == [(101, ip_address.IPV4_MAX), (0, 100)]


def test_search_windows_desc_below_the_cursor_then_wrap():
    assert ip_address.search_windows(100, "desc") == [(0, 99), (100, ip_address.IPV4_MAX)]


def test_ranges_are_clamped_to_the_window_and_ordered_by_address():
    ranges = [(50, 60), (10, 20), (30, 40)]
    assert ip_address.ranges_in_window(ranges, (15, 55), "asc") == [(15, 20), (30, 40), (50, 55)]
    assert ip_address.ranges_in_window(ranges, (15, 55), "desc") == [(50, 55), (30, 40), (15, 20)]
    assert ip_address.ranges_in_window(ranges, (61, 99), "asc") == []


# --- network plans: the vifs forms ----------------------------------------------------------

def plan(vifs, request_params=None):
    strategy = network.PerInstance(network.VifsRequestParam(), {})
    return strategy.plan(network.check_vifs(vifs, NetworkSchedulingError), request_params or {})


def test_vifs_empty_gives_no_vif():
    assert plan({}) == [] and plan(None) == []


def test_vifs_one_and_two_with_running_index():
    assert plan({"eth0": {"network": "nw-demo1"}}) == [VifPlan("eth0", 0, "nw-demo1")]
    two = plan({"eth0": {"index": 3, "network": "nw-demo1"}, "eth1": {"network": "nw-demo2",
                                                                      "security_groups": "sg-a"}})
    assert [(p.name, p.index, p.network, p.security_groups) for p in two] == [
        ("eth0", 3, "nw-demo1", ()), ("eth1", 4, "nw-demo2", ("sg-a",))]


def test_vif_without_network_and_honoured_manual_fields():
    (only,) = plan({"eth0": {"index": "", "network": "", "mac_addr": "525400000001",
                             "security_groups": ["sg-a", " "]}})
    assert (only.index, only.network, only.mac_addr, only.security_groups) == \
        (0, None, "525400000001", ("sg-a",))


@pytest.mark.parametrize("vifs", [
    [], "not json", '["eth0"]', {"eth0": "nw-demo1"}, {"": {}},
    {"eth0": {"network": "demo1"}}, {"eth0": {"nat_network": "sg-x"}},
    {"eth0": {"index": "one"}}, {"eth0": {"index": 0}, "eth1": {"index": 0}},
], ids=["list", "bad-json", "json-list", "vif-not-map", "blank-name", "network-no-prefix",
        "nat-wrong-prefix", "bad-index", "index-twice"])
def test_malformed_vifs_are_network_scheduling_errors(vifs):
    with pytest.raises(NetworkSchedulingError):
        plan(vifs)


def test_vifs_as_json_text_parses():
    assert plan('{"eth0": {"network": "nw-demo1"}}')[0].network == "nw-demo1"


def test_per_instance_selects_by_request_param():
    named = network.VifsRequestParam({"eth0": "nw-x"})
    strategy = network.PerInstance(network.VifsRequestParam(), {"alt": named})
    assert strategy.choose({"network_scheduler": "alt"}) is named
    assert strategy.choose({"network_scheduler": ""}) is strategy.default
    with pytest.raises(NetworkSchedulingError, match="Unknown scheduler definition: nope"):
        strategy.choose({"network_scheduler": "nope"})
    with pytest.raises(NetworkSchedulingError, match="Unable to find any network schedulers"):
        network.PerInstance(None, {}).choose({})
