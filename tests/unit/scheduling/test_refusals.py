"""A placement no host takes says why, host by host over the whole fleet (as Kubernetes
counts nodes), in its typed error and the instance's ``placement_error``; one grouped query
whatever the fleet's size. SQLite and PostgreSQL (the ``session`` fixture)."""

from __future__ import annotations

import secrets
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, or_, select, update

from collector.errors import InsufficientCapacity, NoMatchingHostNode, PlacementError
from collector.models import HostNode, NodeState
from collector.scheduling import capacity, handlers, placement
from collector.scheduling.strategies import host_node
from collector.scheduling.strategies.piped_rules import PipedRules, RequestParamToGroup, Rule
from tests.support.scheduling import scheduling_instance
from workers.demo.world import make


def _hosts(session, n: int, hv: str, **columns) -> list[HostNode]:
    """``n`` hosts of 4 cores, 4096 MB and 10 GB of disk, of hypervisor ``hv``."""
    return [make.host_node(session, hypervisor=hv, **{
        "offering_cpu_cores": 4, "offering_memory_size": 4096,
        "offering_disk_space_mb": 10 * 1024, **columns}) for _ in range(n)]


def _fill(session, host: HostNode, **columns) -> None:
    make.instance(session, host, hypervisor=host.hypervisor, **columns)


def _refused(session, inst, strategy, disk_mb: int = 0) -> PlacementError:
    capacity.release_host(session, inst)
    request = placement.host_request(inst, disk_mb << 20)
    with pytest.raises((InsufficientCapacity, NoMatchingHostNode)) as caught:
        placement.place_host(session, inst, request, strategy)
    return caught.value


def _others(session, hv: str) -> int:
    """Hosts of another hypervisor (other tests') or arch in this database: the fleet
    counts them too."""
    return session.scalar(select(func.count()).select_from(HostNode)
                          .where(or_(HostNode.hypervisor != hv, HostNode.arch != "x86_64")))


def _head(inst, hv: str, cpu: int = 1, memory: int = 1024, disk_mb: int = 0) -> str:
    return (f"0/{{total}} hosts available for {inst.canonical_uuid} ({cpu} cpu cores, "
            f"{memory} MB memory, {disk_mb} MB local disk, x86_64 {hv})")


def _expected(session, inst, hv: str, mine: int, *reasons: str, **request) -> str:
    """The message for the fleet: this test's ``mine`` hosts (x86_64, ``hv``) counted by
    ``reasons`` (in the reasons' order), the others as another hypervisor or arch; most
    first, ties in the reasons' order."""
    others = _others(session, hv)
    counted = [f"{others} other hypervisor or arch"] if others else []
    counted += reasons
    counted.sort(key=lambda part: -int(part.split(" ", 1)[0]))
    return _head(inst, hv, **request).format(total=others + mine) + ": " + ", ".join(counted)


def _unplaced(session, hv: str, cpu: int = 1, memory: int = 1024, **params):
    return make.instance(session, state="scheduling", hypervisor=hv, cpu_cores=cpu,
                         memory_size=memory, request_params=params)


def test_every_reason_is_counted_each_host_once(session):
    hv = f"kvm-{secrets.token_hex(3)}"
    cpu, memory, disk, off, late, disabled = _hosts(session, 6, hv)
    _hosts(session, 1, hv, arch="arm64")
    _fill(session, cpu, cpu_cores=4, memory_size=0)
    _fill(session, memory, cpu_cores=0, memory_size=4096)
    disk.used_disk_bytes = disk.offering_disk_space_mb << 20
    disabled.scheduling_enabled = False
    _fill(session, disabled, cpu_cores=4)  # full too: disabled is what counts
    session.execute(update(NodeState).where(NodeState.node_id == off.node_id)
                    .values(state="offline"))
    session.execute(update(NodeState).where(NodeState.node_id == late.node_id)
                    .values(state="timeout"))
    session.flush()
    inst = _unplaced(session, hv)
    error = _refused(session, inst, host_node.LeastUsage(), disk_mb=1)
    assert type(error) is InsufficientCapacity
    assert error.message == _expected(session, inst, hv, 6, "2 offline", "1 disabled",
                                      "1 short of cpu", "1 short of memory",
                                      "1 short of local disk", disk_mb=1)


def test_no_host_of_the_hypervisor_online_and_enabled_is_no_matching_host(session):
    hv = f"kvm-{secrets.token_hex(3)}"
    off, disabled = _hosts(session, 2, hv)
    disabled.scheduling_enabled = False
    session.execute(update(NodeState).where(NodeState.node_id == off.node_id)
                    .values(state="offline"))
    session.flush()
    inst = _unplaced(session, hv)
    error = _refused(session, inst, host_node.LeastUsage())
    assert type(error) is NoMatchingHostNode
    assert error.message == _expected(session, inst, hv, 2, "1 offline", "1 disabled")


def test_the_strategy_s_exclusions_are_named(session):
    hv = f"kvm-{secrets.token_hex(3)}"
    current, full, other = _hosts(session, 3, hv)
    _fill(session, full, cpu_cores=4)
    _fill(session, other, cpu_cores=4)
    inst = make.instance(session, current, hypervisor=hv, cpu_cores=2, memory_size=1024)
    error = _refused(session, inst, host_node.ExcludeSame())
    assert type(error) is InsufficientCapacity
    assert error.message == _expected(session, inst, hv, 3, "2 short of cpu",
                                      "1 the instance's current host (ExcludeSame)", cpu=2)


def test_piped_rules_group_and_specify_node_exclusions_keep_the_error_class(session):
    hv = f"kvm-{secrets.token_hex(3)}"
    member, *outside = _hosts(session, 3, hv)
    _fill(session, member, cpu_cores=4)
    gold = make.group(session, [member]).canonical_uuid
    inst = _unplaced(session, hv, tier="gold")
    rule = RequestParamToGroup(key="tier", pairs=(("gold", gold),))
    error = _refused(session, inst, PipedRules(rules=(rule,)))
    assert type(error) is NoMatchingHostNode  # what PipedRules says when its filter empties
    assert error.message == _expected(
        session, inst, hv, 3, f"2 not in host node group {gold} (PipedRules)", "1 short of cpu")
    asked = _unplaced(session, hv, host_id=member.canonical_uuid)
    error = _refused(session, asked, host_node.SpecifyNode())
    assert type(error) is InsufficientCapacity
    assert error.message == _expected(
        session, asked, hv, 3, f"2 not the requested {member.canonical_uuid} (SpecifyNode)",
        "1 short of cpu")


def test_a_rule_that_says_nothing_of_itself_counts_its_hosts_as_passed_over(session):
    class Nobody(Rule):
        def filter(self, hosts, request):
            return []

    hv = f"kvm-{secrets.token_hex(3)}"
    _hosts(session, 2, hv)
    inst = _unplaced(session, hv)
    error = _refused(session, inst, PipedRules(rules=(Nobody(),)))
    assert type(error) is NoMatchingHostNode
    assert error.message == _expected(session, inst, hv, 2, "2 with room but passed over "
                                      "(the strategy's rules, or concurrent placements)")


@contextmanager
def _statements(session):
    """The statements the session sends meanwhile (``count[0]``)."""
    count = [0]

    def seen(*_args):
        count[0] += 1

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", seen)


@pytest.mark.parametrize("strategy", [host_node.LeastUsage(), host_node.FindFirst(),
                                      PipedRules()], ids=["LeastUsage", "FindFirst",
                                                          "PipedRules"])
def test_a_refusal_costs_the_same_statements_whatever_the_fleet(session, strategy):
    costs = []
    for size in (2, 20):
        hv = f"kvm-{secrets.token_hex(3)}"
        for host in _hosts(session, size, hv):
            _fill(session, host, cpu_cores=4)
        inst = _unplaced(session, hv)
        session.flush()
        with _statements(session) as count:
            error = _refused(session, inst, strategy)
        assert f"{size} short of cpu" in error.message
        costs.append(count[0])
    assert costs[0] == costs[1], costs


def test_the_instance_keeps_the_explanation_in_its_placement_error(session, world):
    for host in world.hosts:
        _fill(session, host, cpu_cores=4)
    inst = scheduling_instance(session, world)
    answer = handlers.schedule_instance(session, inst.canonical_uuid)
    session.refresh(inst)
    assert inst.placement_error == f"InsufficientCapacity: {answer['message']}"
    assert answer["message"].startswith(f"0/{_others(session, world.hv) + 2} hosts available")
    assert "2 short of cpu" in answer["message"]
