"""Evacuation under contention on PostgreSQL, several OS processes at once (each with its
own engine, one transaction per call, retried on a transient database error as the task
layer does):

* two processes evacuate the same dead host while three place new instances onto the
  same targets: no host goes past its offering, each evacuated instance lands once, and
  every slot that was free ends up used (a failure means there really was no room);
* three processes handle the same ``node_collector/offline`` event at once: one
  evacuates, the others see the outage handled.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from collector.db import unit_of_work
from collector.models import LOCAL, HostNode, Instance, NodeState
from collector.scheduling import capacity
from tests.support.placement_cluster import run_at_once
from workers.demo.world import make, placement

pytestmark = pytest.mark.integration

TARGETS, SLOTS, HA, NEW = 5, 10, 30, 40
GiB = 1 << 30


def _seed(url: str, ha: int, new: int) -> tuple[str, str, list[str]]:
    """A dead source host with ``ha`` HA instances (1 core, 1 GB, a 1 GiB local disk
    each); ``TARGETS`` hosts with ``SLOTS`` such slots; ``new`` instances to place."""
    with unit_of_work(url) as session:
        world = placement.build(session, [placement.HostSize.slots(ha),
                                          *[placement.HostSize.slots(SLOTS)] * TARGETS],
                                hypervisor=f"kvm-{secrets.token_hex(3)}")
        source = world.hosts[0]
        for _ in range(ha):
            inst = make.instance(session, source, img=world.image, hypervisor=world.hypervisor,
                                 ha_enabled=1, memory_size=1024)
            make.volume(session, inst, LOCAL, boot=True, size=GiB)
        new_ids = world.awaiting_placement(session, new)
        session.execute(update(NodeState).where(NodeState.node_id == source.node_id)
                        .values(state="offline"))
        return source.canonical_uuid, source.node_id, new_ids


def _retried(url: str, fn, *args):
    for _ in range(20):
        try:
            with unit_of_work(url) as session:
                return fn(session, *args)
        except OperationalError:  # deadlock / serialization: the task layer retries too
            continue
    raise AssertionError(f"{fn.__name__} kept failing")


def _evacuate(url: str, host: str, start: object, results: object) -> None:
    from collector.scheduling import evacuation

    start.wait()
    results.put(("evacuate", _retried(url, evacuation.evacuate_from, host, True)))


def _place(url: str, instance_ids: list[str], start: object, results: object) -> None:
    from collector.scheduling import handlers

    start.wait()
    results.put(("place", [_retried(url, handlers.schedule_instance, i)["outcome"]
                           for i in instance_ids]))


def _on_offline(url: str, config_path: str, node_id: str, start: object,
                results: object) -> None:
    from collector.scheduling import evacuation
    from collector.scheduling import placement_config as config

    config.reload_scheduler_config(config_path)
    start.wait()
    results.put(("event", _retried(url, evacuation.on_node_offline, [node_id],
                                   "collector.master")))


def test_evacuation_racing_new_placements_never_over_commits(race_db):
    source, _, new_ids = _seed(race_db, HA, NEW)
    collected = run_at_once([(_evacuate, race_db, source), (_evacuate, race_db, source),
                             *((_place, race_db, new_ids[n::3]) for n in range(3))])
    scheduled = [i for kind, r in collected if kind == "evacuate" for i in r["scheduled"]]
    placed = [o for kind, r in collected if kind == "place" for o in r]
    assert len(scheduled) == len(set(scheduled))  # no instance moved twice
    with unit_of_work(race_db, readonly=True) as session:
        source_id = HostNode.by_cuuid(session, source).id
        for host in session.scalars(select(HostNode).where(HostNode.id != source_id)):
            used = session.execute(select(func.count(), func.coalesce(func.sum(
                Instance.memory_size), 0)).where(Instance.host_node_id == host.id,
                                                 Instance.terminated_at.is_(None))).one()
            assert used[0] <= host.offering_cpu_cores, host.canonical_uuid
            assert used[1] <= host.offering_memory_size, host.canonical_uuid
            assert host.used_disk_bytes <= host.offering_disk_space_mb << 20
        moved = session.scalar(select(func.count()).select_from(Instance).where(
            Instance.ha_enabled == 1, Instance.host_node_id != source_id,
            Instance.state == "pending"))
        left = session.scalars(select(Instance).where(Instance.host_node_id == source_id)).all()
        assert moved == len(scheduled)
        assert all(i.state == "halted" and i.placement_error.startswith("InsufficientCapacity")
                   for i in left)
        assert moved + len(left) == HA
        assert moved + placed.count("placed") == TARGETS * SLOTS  # every free slot used
        assert placed.count("failed") == NEW - placed.count("placed")
        assert capacity.reconcile(session) == []


def test_one_offline_event_handled_by_three_workers_evacuates_once(race_db, tmp_path):
    source, node_id, _ = _seed(race_db, 12, 0)
    conf = Path(tmp_path / "scheduler.toml")
    conf.write_text("evacuate_on_node_offline = true\n")
    collected = run_at_once([(_on_offline, race_db, str(conf), node_id) for _ in range(3)])
    answers = [r for _, r in collected]
    acted = [a for a in answers if "scheduled" in a]
    assert len(acted) == 1 and len(acted[0]["scheduled"]) == 12
    assert sorted(a.get("skipped", "") for a in answers if a is not acted[0]) == \
        ["this outage was already evacuated"] * 2
    with unit_of_work(race_db, readonly=True) as session:
        source_row = HostNode.by_cuuid(session, source)
        assert source_row.scheduling_enabled is False
        assert session.scalar(select(func.count()).select_from(Instance).where(
            Instance.host_node_id == source_row.id)) == 0
        assert capacity.reconcile(session) == []
