"""Host strategies PipedRules (and its rules), ExcludeSame, over-commit, and storage
FindFirst: pure over snapshots first, then through the claim loop on a real database."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select, update

from collector.errors import (
    InsufficientCapacity,
    NoMatchingHostNode,
    NoMatchingStorageNode,
    SchedulerConfigError,
    UnknownGroup,
)
from collector.models import NodeState, StorageNode
from collector.scheduling import capacity, placement
from collector.scheduling import placement_config as config
from collector.scheduling.strategies import host_node, piped_rules, storage_node
from collector.scheduling.strategies.piped_rules import (
    LeastUsageBy,
    PipedRules,
    RequestParamToGroup,
    Rule,
    ScatterBy,
)
from tests.support.scheduling import GB, host, node, request
from workers.demo.world import make


def ids(hosts):
    return [h.id for h in hosts]


def piped(*rules, max_results=100):
    return PipedRules(tuple(rules), max_results)


def with_(h, **facts):
    from dataclasses import replace

    return replace(h, **facts)


# --- PipedRules, pure ----------------------------------------------------------------------

def test_max_results_cuts_the_ordered_fitting_hosts_not_the_raw_rows():
    # S10: the original took LIMIT max_results rows before ordering and before the capacity
    # check, so host 3 (the best, and the only other one with room) could be cut off.
    hosts = [host(1, free_cpu=0), host(2, free_mem=2048), host(3, free_mem=9000)]
    assert ids(piped(max_results=1).rank(hosts, request())) == [2]
    by_memory = piped(LeastUsageBy("memory_size"), max_results=1)
    assert ids(by_memory.rank(hosts, request())) == [3]


def test_no_rules_is_every_fitting_host_by_id():
    hosts = [host(5), host(2), host(9, free_cpu=1), host(4, online=False),
             host(3, scheduling_enabled=False)]
    assert ids(piped().rank(hosts, request())) == [2, 5]


def test_architecture_and_hypervisor_are_filtered():
    hosts = [host(1, arch="x86"), host(2, hypervisor="lxc"), host(3)]
    assert ids(piped().rank(hosts, request())) == [3]  # S10: the original ignored arch
    with pytest.raises(NoMatchingHostNode, match="x86_64 kvm"):
        piped().rank(hosts[:2], request())
    with pytest.raises(InsufficientCapacity):
        piped().rank([host(1, free_mem=1)], request())


@pytest.mark.parametrize(("key", "expected"), [
    ("cpu_cores", [3, 1, 2]), ("memory_size", [2, 3, 1]), ("quota_weight", [1, 2, 3])])
def test_least_usage_by_each_key_ascending(key, expected):
    hosts = [with_(host(1, free_cpu=10, free_mem=2048), used_quota_weight=0.5),
             with_(host(2, free_cpu=8, free_mem=9000), used_quota_weight=1.0),
             with_(host(3, free_cpu=12, free_mem=4096), used_quota_weight=2.0)]
    assert ids(piped(LeastUsageBy(key)).rank(hosts, request())) == expected


def test_least_usage_by_is_absolute_usage_not_a_ratio():
    big = host(1, offering_cpu_cores=64, free_cpu=60)   # 4 used of 64
    small = host(2, offering_cpu_cores=4, free_cpu=2)   # 2 used of 4
    assert ids(piped(LeastUsageBy()).rank([big, small], request(cpu=1))) == [2, 1]


def test_scatter_by_account_spreads_the_account_ties_by_id():
    hosts = [with_(host(1), account_instances=2), with_(host(2), account_instances=0),
             with_(host(3), account_instances=0)]
    assert ids(piped(ScatterBy()).rank(hosts, request())) == [2, 3, 1]


def test_the_last_sorting_rule_decides_earlier_ones_break_its_ties():
    hosts = [with_(host(1, free_cpu=10), account_instances=1),
             with_(host(2, free_cpu=12), account_instances=1),
             with_(host(3, free_cpu=8), account_instances=0)]
    rules = (LeastUsageBy("cpu_cores"), ScatterBy())
    assert ids(piped(*rules).rank(hosts, request())) == [3, 2, 1]
    assert ids(piped(*reversed(rules)).rank(hosts, request())) == [2, 1, 3]


def rp2g(**kw):
    return RequestParamToGroup("tier", kw.get("default"), tuple(kw.get("pairs", ())))


def grouped():
    return [with_(host(1), groups=frozenset({"hng-gold"})),
            with_(host(2), groups=frozenset({"hng-std"})),
            with_(host(3), groups=frozenset({"hng-gold", "hng-std"}))]


def test_request_param_to_group_pair_wins_even_without_a_default():
    rule = rp2g(pairs=[("gold", "hng-gold")])  # S10: the original demanded a default
    req = request(request_params={"tier": "gold"})
    assert ids(piped(rule).rank(grouped(), req)) == [1, 3]


def test_request_param_to_group_falls_back_to_the_default():
    rule = rp2g(default="hng-std", pairs=[("gold", "hng-gold")])
    for params in ({"tier": "silver"}, {}):
        assert ids(piped(rule).rank(grouped(), request(request_params=params))) == [2, 3]


def test_request_param_to_group_without_pair_or_default_is_unknown_group():
    with pytest.raises(UnknownGroup, match="no default"):
        piped(rp2g(pairs=[("gold", "hng-gold")])).rank(grouped(), request())


def test_a_group_without_fitting_members_is_no_matching_host():
    rule = rp2g(default="hng-empty")
    with pytest.raises(NoMatchingHostNode, match="after piping through all rules"):
        piped(rule).rank(grouped(), request())


def test_a_custom_rule_plugs_in_by_name():
    class Biggest(Rule):
        def reorder(self, hosts, request):
            return sorted(hosts, key=lambda h: -h.offering_memory_size)

    @piped_rules.register_rule("TestOnlyBiggest")
    def _build(options, where):
        return Biggest()

    try:
        cfg = config.parse_config({"service_types": {"std": {
            "host_node_scheduler": {"strategy": "PipedRules",
                                    "through": [{"rule": "TestOnlyBiggest"}]},
            "storage_node_scheduler": "LeastUsage", "network_scheduler": "VifsRequestParam"}}})
        strategy = cfg.service_type("std").host_node
        hosts = [host(1), host(2, offering_memory_size=65536, free_mem=8192)]
        assert ids(strategy.rank(hosts, request())) == [2, 1]
    finally:
        del piped_rules._RULES["TestOnlyBiggest"]


def std_with(host_entry):
    return {"service_types": {"std": {"host_node_scheduler": host_entry,
                                      "storage_node_scheduler": "LeastUsage",
                                      "network_scheduler": "VifsRequestParam"}}}


def test_piped_rules_configuration_maps_the_original_dsl():
    cfg = config.parse_config(std_with({
        "strategy": "PipedRules", "max_results": 5, "through": [
            {"rule": "RequestParamToGroup", "key": "tier", "default": "hng-std",
             "pair": {"gold": "hng-gold"}},
            {"rule": "LeastUsageBy", "key": "quota_weight"},
            {"rule": "ScatterBy"}]}))
    assert cfg.service_type().host_node == PipedRules(
        (RequestParamToGroup("tier", "hng-std", (("gold", "hng-gold"),)),
         LeastUsageBy("quota_weight"), ScatterBy("account_id")), 5)
    listed = config.parse_config(std_with({"strategy": "PipedRules", "through": [
        {"rule": "RequestParamToGroup", "key": "k", "pair": [["a", "hng-a"], ["b", "hng-b"]]}]}))
    assert listed.service_type().host_node.rules[0].pairs == (("a", "hng-a"), ("b", "hng-b"))
    assert listed.service_type().host_node.max_results == 100
    assert config.parse_config(std_with({"strategy": "PipedRules"})).service_type() \
        .host_node.rules == ()


@pytest.mark.parametrize(("entry", "message"), [
    ({"max_results": 0}, "host_node_scheduler.max_results: must be an integer >= 1"),
    ({"max_results": True}, "host_node_scheduler.max_results: must be an integer >= 1"),
    ({"through": {"rule": "ScatterBy"}}, "host_node_scheduler.through: must be an array"),
    ({"through": [{"key": "x"}]}, "host_node_scheduler.through[0].rule: required"),
    ({"through": [{"rule": "Nope"}]}, "host_node_scheduler.through[0]: unknown rule 'Nope'"),
    ({"through": [{"rule": "LeastUsageBy", "key": "disk"}]},
     'host_node_scheduler.through[0].key: must be "cpu_cores" or "memory_size" or '
     '"quota_weight"'),
    ({"through": [{"rule": "ScatterBy", "column": "user_id"}]},
     'host_node_scheduler.through[0].column: must be "account_id"'),
    ({"through": [{"rule": "RequestParamToGroup"}]},
     "host_node_scheduler.through[0].key: required"),
    ({"through": [{"rule": "RequestParamToGroup", "key": "k", "default": "nwg-x"}]},
     "host_node_scheduler.through[0].default: must be an id hng-"),
    ({"through": [{"rule": "RequestParamToGroup", "key": "k", "pair": {"a": 1}}]},
     "host_node_scheduler.through[0].pair: must be a table of strings"),
    ({"through": [{"rule": "ScatterBy", "colour": "x"}]},
     "host_node_scheduler.through[0].colour: unknown option"),
])
def test_bad_piped_rules_configuration_names_the_key(entry, message):
    with pytest.raises(SchedulerConfigError) as info:
        config.parse_config(std_with({"strategy": "PipedRules", **entry}))
    assert str(info.value).startswith(f"service_types.std.{message}")


# --- ExcludeSame, over-commit, LeastUsage options, pure ---------------------------------

def test_exclude_same_never_the_current_host_fitting_ones_by_id():
    hosts = [host(4), host(1), host(2, free_cpu=0), host(3)]
    req = request(current_host="hn-host0001")
    assert ids(host_node.ExcludeSame().rank(hosts, req)) == [3, 4]
    assert ids(host_node.ExcludeSame().rank(hosts, request())) == [1, 3, 4]  # no host: none out
    with pytest.raises(NoMatchingHostNode):
        host_node.ExcludeSame().rank([host(1)], req)
    with pytest.raises(InsufficientCapacity):
        host_node.ExcludeSame().rank([host(1), host(2, free_cpu=0)], req)


def test_over_commit_order_ignores_room_but_not_the_rest():
    hosts = [host(1, free_mem=100), host(2, free_mem=200, free_cpu=0), host(3, online=False),
             host(4, free_mem=900), host(5, arch="x86")]
    req = request(current_host="hn-host0004")
    assert ids(host_node.LeastUsage().rank_over_commit(hosts, req)) == [2, 1]
    assert ids(host_node.LeastUsage("cpu").rank_over_commit(hosts, req)) == [1, 2]


def test_least_usage_allow_over_commit_and_exclude_same_options():
    cfg = config.parse_config(std_with({"strategy": "LeastUsage", "allow_over_commit": True}))
    assert cfg.service_type().host_node == host_node.LeastUsage("memory", True)
    assert cfg.service_type().host_node_ha == host_node.LeastUsage("memory", True)
    with pytest.raises(SchedulerConfigError, match="allow_over_commit: must be true or false"):
        config.parse_config(std_with({"strategy": "LeastUsage", "allow_over_commit": "yes"}))
    ha = config.parse_config({"service_types": {"std": {
        "host_node_scheduler": "LeastUsage", "host_node_ha_scheduler": "ExcludeSame",
        "storage_node_scheduler": "FindFirst", "network_scheduler": "VifsRequestParam"}}})
    st = ha.service_type()
    assert (st.host_node_ha, st.storage_node) == (host_node.ExcludeSame(),
                                                  storage_node.FindFirst())


# --- storage FindFirst, pure ----------------------------------------------------------------

def test_storage_find_first_is_the_first_online_node_with_room_by_id():
    nodes = [node(4, 500 * GB), node(2, 5 * GB), node(3, 50 * GB), node(1, 900 * GB, False)]
    assert [n.id for n in storage_node.FindFirst().rank(nodes, 10 * GB)] == [3, 4]
    with pytest.raises(NoMatchingStorageNode):
        storage_node.FindFirst().rank([node(1, GB, online=False)], GB)
    with pytest.raises(InsufficientCapacity):
        storage_node.FindFirst().rank([node(1, GB)], 2 * GB)


# --- through the claim loop, on a database --------------------------------------------------

@pytest.fixture()
def hosts(session):
    """Three equal hosts of a hypervisor only this test uses."""
    hv = f"kvm-{secrets.token_hex(3)}"
    return [make.host_node(session, hypervisor=hv, offering_cpu_cores=8,
                                  offering_memory_size=8192, offering_disk_space_mb=10240)
            for _ in range(3)]


def unplaced(session, hosts, account="a-shpoolxx", cpu=1, quota=0.0, **params):
    return make.instance(session, state="scheduling", hypervisor=hosts[0].hypervisor,
                                cpu_cores=cpu, memory_size=512, account_id=account,
                                quota_weight=quota, request_params=params)


def place(session, inst, strategy, over_commit=False):
    capacity.release_host(session, inst)
    request = placement.host_request(inst, 0)
    return placement.place_host(session, inst, request, strategy, over_commit).uuid


def test_piped_rules_places_consecutive_instances_spread_as_usage_grows(session, hosts):
    strategy = piped(LeastUsageBy("cpu_cores"))
    placed = [place(session, unplaced(session, hosts), strategy) for _ in range(4)]
    uuids = [h.canonical_uuid for h in hosts]
    assert placed == [uuids[0], uuids[1], uuids[2], uuids[0]]  # equal hosts: id order


def test_piped_rules_reads_groups_and_usage_from_the_database(session, hosts):
    gold = make.group(session, [hosts[1], hosts[2]])
    strategy = piped(rp2g(pairs=[("gold", gold.canonical_uuid)]), LeastUsageBy("quota_weight"),
                     ScatterBy())
    make.instance(session, hosts[1], hypervisor=hosts[0].hypervisor, quota_weight=3.0,
                         account_id="a-other")
    make.instance(session, hosts[2], hypervisor=hosts[0].hypervisor, quota_weight=3.0,
                         account_id="a-mine")
    inst = unplaced(session, hosts, account="a-mine", tier="gold")
    assert place(session, inst, strategy) == hosts[1].canonical_uuid  # scatter decides
    with pytest.raises(UnknownGroup, match="Unknown host node group: hng-zzzzzzzz"):
        place(session, unplaced(session, hosts, tier="x"),
              piped(rp2g(default="hng-zzzzzzzz")))


def test_exclude_same_moves_the_instance_off_its_host(session, hosts):
    inst = make.instance(session, hosts[0], hypervisor=hosts[0].hypervisor)
    assert place(session, inst, host_node.ExcludeSame()) == hosts[1].canonical_uuid
    assert place(session, inst, host_node.ExcludeSame()) == hosts[0].canonical_uuid
    assert capacity.reconcile(session) == []


def test_over_commit_takes_the_best_host_past_its_offering_only_when_allowed(session, hosts):
    session.execute(update(NodeState).where(NodeState.node_id == hosts[2].node_id)
                    .values(state="offline"))
    for h in hosts[:2]:
        make.instance(session, h, hypervisor=h.hypervisor, cpu_cores=8)
    inst = make.instance(session, hosts[2], hypervisor=hosts[0].hypervisor, cpu_cores=2)
    with pytest.raises(InsufficientCapacity):
        place(session, inst, host_node.LeastUsage(), over_commit=True)  # not allowed
    allowed = host_node.LeastUsage(allow_over_commit=True)
    with pytest.raises(InsufficientCapacity):
        place(session, inst, allowed)  # allowed, but not an HA re-placement
    assert place(session, inst, allowed, over_commit=True) == hosts[0].canonical_uuid
    session.refresh(hosts[0])
    assert hosts[0].used_cpu_cores == 10 and capacity.reconcile(session) == []


def test_storage_find_first_places_on_the_lowest_id_with_room(session):
    session.execute(update(NodeState).where(NodeState.node_id.in_(select(StorageNode.node_id)))
                    .values(state="offline"))
    nodes = [make.storage_node(session, offering_disk_space_mb=mb)
             for mb in (1024, 100 * 1024, 200 * 1024)]
    vol = make.volume(session, None, kind=None, size=10 * GB, state="scheduling")
    chosen = placement.place_storage(session, vol, storage_node.FindFirst())
    assert chosen.uuid == nodes[1].canonical_uuid  # the first has 1 GB only
    assert session.get(StorageNode, nodes[1].id).used_disk_bytes == 10 * GB
