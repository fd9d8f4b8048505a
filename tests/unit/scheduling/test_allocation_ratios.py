"""Allocation ratios: a host offers placement its physical cpu and memory times a ratio (its
own, else the scheduler configuration's), in the claim statement itself; lowering one evicts
nothing; ``collector nodes`` shows both figures; the api refuses a bad ratio, typed, with
nothing written. SQLite and PostgreSQL (the ``session`` fixture)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from collector.errors import (
    InvalidArgument,
    InvalidParameter,
    OutOfHostCapacity,
    SchedulerConfigError,
    UnknownHostNodeID,
)
from collector.models import HostAllocation, HostNode, Instance
from collector.scheduling import capacity, handlers, placement, ratios
from collector.scheduling import placement_config as config
from collector.services.api import hosts as api_hosts
from collector.services.stats import node_overview
from tests.support.scheduling import counters_true, scheduling_instance
from workers.demo.world import make


@pytest.fixture()
def configured(tmp_path):
    """``configured(toml)``: the scheduler configuration of this test (the default after)."""

    def load(text: str) -> config.SchedulerConfig:
        path = tmp_path / "scheduler.toml"
        path.write_text(text)
        return config.reload_scheduler_config(str(path))

    yield load
    config.reload_scheduler_config()


def _hosts_in_database(session) -> int:
    return session.scalar(select(func.count()).select_from(HostNode))


def _eight_cores_at_two(session, world) -> HostNode:
    """The world's first host: 8 cores at a cpu ratio of 2.0, memory and disk to spare; the
    other one disabled."""
    host, other = world.hosts
    host.offering_cpu_cores, host.cpu_allocation_ratio_milli = 8, 2000
    host.offering_memory_size, host.offering_disk_space_mb = 64 * 1024, 1024 * 1024
    other.scheduling_enabled = False
    session.flush()
    return host


def test_a_host_of_8_cores_at_ratio_2_takes_16_one_core_instances_and_refuses_the_17th(
        session, world):
    host = _eight_cores_at_two(session, world)
    placed = [handlers.schedule_instance(session, scheduling_instance(session, world)
                                         .canonical_uuid) for _ in range(16)]
    assert {(r["outcome"], r["host_node_id"]) for r in placed} == {
        ("placed", host.canonical_uuid)}
    last = scheduling_instance(session, world)
    answer = handlers.schedule_instance(session, last.canonical_uuid)
    assert (answer["outcome"], answer["error_type"], answer["state"]) == (
        "failed", "InsufficientCapacity", "terminated")
    others = _hosts_in_database(session) - 2  # the whole fleet counts; most first
    why = (f"0/{others + 2} hosts available for {last.canonical_uuid} (1 cpu cores, 1024 MB "
           f"memory, 10240 MB local disk, x86_64 {world.hv}): "
           f"{f'{others} other hypervisor or arch, ' if others else ''}"
           "1 disabled, 1 short of cpu")
    assert answer["message"] == why
    session.refresh(last)
    assert last.placement_error == f"InsufficientCapacity: {why}"
    session.refresh(host)
    assert (host.used_cpu_cores, host.used_memory_size) == (16, 16 * 1024)
    assert counters_true(session)


def test_the_ratio_is_checked_in_the_claim_statement_itself(session, world):
    """``claim_host`` alone, no candidate query before it: the UPDATE's WHERE holds the line."""
    host = _eight_cores_at_two(session, world)
    instances = [make.instance(session, state="scheduling", hypervisor=world.hv)
                 for _ in range(17)]
    assert all(capacity.claim_host(session, host.id, inst, 0) for inst in instances[:16])
    assert not capacity.claim_host(session, host.id, instances[16], 0)
    host.ram_allocation_ratio_milli, host.offering_memory_size = 1500, 1024 * 12  # 18 GB
    host.cpu_allocation_ratio_milli = 3000
    session.flush()
    assert capacity.claim_host(session, host.id, instances[16], 0)  # 17 GB of 18
    extra = make.instance(session, state="scheduling", hypervisor=world.hv, memory_size=2048)
    assert not capacity.claim_host(session, host.id, extra, 0)  # 19 GB: short of memory
    assert counters_true(session)


def test_the_api_s_explicit_host_says_what_it_offers_after_its_ratio(session, world):
    host = _eight_cores_at_two(session, world)
    for _ in range(16):
        make.instance(session, host, hypervisor=world.hv)
    inst = make.instance(session, img=world.local_image, state="scheduling",
                         hypervisor=world.hv)
    with pytest.raises(OutOfHostCapacity, match=(
            f"^host node {host.canonical_uuid} has no room for 1 cpu cores, 1024 MB memory "
            "and 0 bytes of local disk: it has 0 of 16 cpu cores, 49152 of 65536 MB memory "
            r"\(after its allocation ratios\)")):
        placement.assign_explicit_host(session, inst, host.canonical_uuid)


def test_hosts_without_a_ratio_take_the_configured_default(session, world, configured):
    configured("cpu_allocation_ratio = 1.5\nram_allocation_ratio = 2.0\n")
    own, default = world.hosts  # 4 cores and 4096 MB each
    own.cpu_allocation_ratio_milli = own.ram_allocation_ratio_milli = 1000
    for host in world.hosts:
        host.offering_disk_space_mb = 1024 * 1024
    session.flush()
    placed = {h.canonical_uuid: 0 for h in world.hosts}
    while (answer := handlers.schedule_instance(
            session, scheduling_instance(session, world).canonical_uuid))["outcome"] == "placed":
        placed[answer["host_node_id"]] += 1
    # cpu: 4 x 1.0 and 4 x 1.5; memory: 4096 x 1.0 and 4096 x 2.0, 1024 MB each
    assert placed == {own.canonical_uuid: 4, default.canonical_uuid: 6}
    assert "2 short of cpu" in answer["message"]
    rows = {r["id"]: r for r in node_overview(session) if r["kind"] == "host"}
    assert rows[default.canonical_uuid]["allocation_ratios"] == {
        "cpu": {"ratio": 1.5, "source": "default"}, "ram": {"ratio": 2.0, "source": "default"}}
    assert rows[default.canonical_uuid]["cpu_cores"] == {"used": 6, "total": 6}
    assert rows[default.canonical_uuid]["memory_mb"] == {"used": 6144, "total": 8192}
    assert rows[own.canonical_uuid]["allocation_ratios"]["cpu"] == {"ratio": 1.0,
                                                                    "source": "host"}


def test_lowering_a_ratio_below_what_is_used_evicts_nothing_and_refuses_new_claims(
        session, world):
    host = _eight_cores_at_two(session, world)
    placed = [scheduling_instance(session, world) for _ in range(16)]
    for inst in placed:
        handlers.schedule_instance(session, inst.canonical_uuid)
    row = api_hosts.set_host_allocation_ratios(session, host.canonical_uuid, cpu=1.0)
    assert row["cpu_cores"] == {"used": 16, "total": 8}
    assert row["allocation_ratios"]["cpu"] == {"ratio": 1.0, "source": "host"}
    assert session.scalar(select(func.count()).select_from(HostAllocation).where(
        HostAllocation.host_node_id == host.id)) == 16
    assert {(i.state, i.host_node_id) for i in session.scalars(select(Instance).where(
        Instance.id.in_([i.id for i in placed])))} == {("pending", host.id)}
    refused = handlers.schedule_instance(session, scheduling_instance(session, world)
                                         .canonical_uuid)
    assert refused["error_type"] == "InsufficientCapacity"
    assert refused["message"].endswith("1 disabled, 1 short of cpu")
    for inst in placed[:9]:  # down to 7 cores used of the 8 it now offers
        capacity.release_host(session, inst)
    again = handlers.schedule_instance(session, scheduling_instance(session, world)
                                       .canonical_uuid)
    assert (again["outcome"], again["host_node_id"]) == ("placed", host.canonical_uuid)
    assert counters_true(session)


def test_default_puts_a_host_back_on_the_configured_ratio(session, world):
    host = world.hosts[0]
    first = api_hosts.set_host_allocation_ratios(session, host.canonical_uuid, 2.5, 1.25)
    assert (first["cpu_cores"]["total"], first["memory_mb"]["total"]) == (10, 5120)
    assert first["physical"] == {"cpu_cores": 4, "memory_mb": 4096, "disk_mb": 50 * 1024}
    back = api_hosts.set_host_allocation_ratios(session, host.canonical_uuid, ram="default")
    assert back["allocation_ratios"] == {"cpu": {"ratio": 2.5, "source": "host"},
                                         "ram": {"ratio": 1.0, "source": "default"}}
    session.refresh(host)
    assert (host.cpu_allocation_ratio_milli, host.ram_allocation_ratio_milli) == (2500, None)


@pytest.mark.parametrize("cpu", [0, -1, 0.0004, 1.2345, 101, math.nan, math.inf, "2", "auto",
                                 True, [2], {"ratio": 2}],
                         ids=["zero", "negative", "rounds_to_zero", "four_decimals",
                              "above_100", "nan", "inf", "text", "word", "bool", "list",
                              "dict"])
def test_a_bad_ratio_is_refused_typed_and_nothing_is_written(session, world, cpu):
    host = world.hosts[0]
    with pytest.raises(InvalidParameter, match="cpu allocation ratio: must"):
        api_hosts.set_host_allocation_ratios(session, host.canonical_uuid, cpu, 2.0)
    session.expire_all()
    assert (host.cpu_allocation_ratio_milli, host.ram_allocation_ratio_milli) == (None, None)


@pytest.mark.parametrize(("error", "host_id", "cpu", "ram"), [
    (InvalidParameter, None, None, None),  # no ratio at all
    (UnknownHostNodeID, "hn-zzzzzzzz", 2.0, None),
    (InvalidArgument, "i-abcdefgh", 2.0, None),
    (InvalidArgument, 42, 2.0, None),
], ids=["no_ratio", "unknown_host", "wrong_prefix", "not_a_string"])
def test_a_bad_host_or_no_ratio_is_refused_typed_and_nothing_is_written(session, world, error,
                                                                        host_id, cpu, ram):
    host = world.hosts[0]
    with pytest.raises(error):
        api_hosts.set_host_allocation_ratios(session, host_id or host.canonical_uuid, cpu, ram)
    session.expire_all()
    assert (host.cpu_allocation_ratio_milli, host.ram_allocation_ratio_milli) == (None, None)


def test_three_decimals_are_exact():
    assert [ratios.ratio_milli(v) for v in (1.15, 0.001, 100, 2, 1.999)] == [
        1150, 1, 100_000, 2000, 1999]
    assert ratios.offered(100, ratios.ratio_milli(1.15)) == 115  # not 114, as floats make it


@pytest.mark.parametrize(("text", "message"), [
    ("cpu_allocation_ratio = 0\n", "cpu_allocation_ratio: must be above 0 and at most 100"),
    ('ram_allocation_ratio = "2"\n', "ram_allocation_ratio: must be a number"),
    ("ram_allocation_ratio = 1.0001\n", "ram_allocation_ratio: must have at most 3 decimals"),
])
def test_a_bad_configured_ratio_names_its_key(configured, text, message):
    with pytest.raises(SchedulerConfigError, match=f"^{message}"):
        configured(text)


def test_the_api_check_counts_what_hosts_offer_after_their_ratios(session, world, configured):
    """The API's whole-fleet check (spec 5.4) sums what each online, enabled host offers
    (physical x ratio) less what it uses; a host over its offer counts none."""
    configured("cpu_allocation_ratio = 2.0\n")
    world.hosts[1].cpu_allocation_ratio_milli = 500  # 2 cores offered
    make.instance(session, world.hosts[1], hypervisor=world.hv, cpu_cores=3)  # 1 over
    free = sum(max(0, r["cpu_cores"]["total"] - r["cpu_cores"]["used"])
               for r in node_overview(session)
               if r["kind"] == "host" and r["state"] == "online" and r["scheduling_enabled"])
    assert capacity.domain_host_capacity(session, free, 0)
    assert not capacity.domain_host_capacity(session, free + 1, 0)
