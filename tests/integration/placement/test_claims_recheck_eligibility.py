"""A claim re-checks everything that makes a host eligible, in the statement that claims it.

PostgreSQL, several sessions, deterministic interleavings: one session holds a row lock in
an open transaction, a placement in a thread with its own session blocks on it (seen in
``pg_stat_activity``), the first session commits, the placement finishes; then the rows
are checked. No instance lands on a host that was drained, offline or evacuated when its
claim committed:

* a drain (``api.set_host_scheduling(H, False)``) a placement waited for;
* a host that went offline and was evacuated while the placement waited on another host,
  which then filled up;
* a node the sweep marks offline while a placement claims its host: the placement waits for
  the sweep and leaves the host alone, and a sweep that comes while a claim is not yet
  committed leaves the node for its next run (the evacuation then finds the instance);
* an allocation ratio lowered (``api.set_host_allocation_ratios``) while a placement waited:
  the claim obeys the new ratio, and what the host already runs stays.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from collector.db import db_now, get_engine, session_factory, unit_of_work
from collector.ids import new_uuid
from collector.models import HostAllocation, HostNode, Instance, NodeState
from collector.scheduling import capacity, evacuation, handlers
from collector.scheduling import placement_config as config
from collector.services import node_states
from collector.services.api import hosts
from workers.demo.world import placement

pytestmark = pytest.mark.integration

SLOT = placement.HostSize.slots  # room for n instances of 1 core, 1 GB, 1 GiB disk


@pytest.fixture()
def pg_url(postgres_server) -> str:
    """A new migrated PostgreSQL database of this test alone."""
    from collector.db.migrate import upgrade

    url = postgres_server.create_database(f"claims_{new_uuid()}")
    upgrade(url)
    return url


def _seed(url: str, sizes: list[placement.HostSize], waiting: int = 1
          ) -> tuple[list[str], list[str]]:
    """Hosts of ``sizes`` (online, enabled; the first has the most free memory when the
    sizes say so) of a hypervisor of their own, and ``waiting`` instances to place."""
    with unit_of_work(url) as session:
        world = placement.build(session, sizes, hypervisor=f"kvm-{secrets.token_hex(3)}")
        return ([h.canonical_uuid for h in world.hosts],
                world.awaiting_placement(session, waiting))


@pytest.fixture()
def open_session(pg_url) -> Iterator[Callable[[], Session]]:
    """``open_session()``: a session in an open transaction (rolled back at the end unless
    the test commits it)."""
    opened: list[Session] = []

    def new() -> Session:
        session = session_factory(pg_url)()
        session.begin()
        opened.append(session)
        return session

    yield new
    for session in opened:
        session.rollback()
        session.close()


def _pid(session: Session) -> int:
    return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


class Placement(threading.Thread):
    """``handlers.schedule_instance`` in a thread, one transaction of its own."""

    def __init__(self, url: str, instance_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.instance_id = url, instance_id
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with unit_of_work(self.url) as session:
                self.answer = handlers.schedule_instance(session, self.instance_id)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self) -> dict[str, Any]:
        self.join(30)
        assert not self.is_alive(), "the placement never finished"
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def _wait_blocked_by(url: str, pid: int, thread: threading.Thread | None = None,
                     timeout: float = 20) -> bool:
    """Until some backend waits for a lock that backend ``pid`` holds (True), or ``thread``
    ended without waiting (False)."""
    deadline = time.monotonic() + timeout
    # The read-only engine runs each statement on its own: pg_stat_activity is read anew
    # (inside one transaction it would be the same snapshot every time).
    with get_engine(url, readonly=True).connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE :pid = ANY(pg_blocking_pids(pid))"), {"pid": pid}).scalar_one()
            if waiting:
                return True
            if thread is not None and not thread.is_alive():
                return False
            time.sleep(0.02)
    raise AssertionError(f"nothing waited for backend {pid} within {timeout}s")


def _hold_host(session: Session, host: str) -> HostNode:
    """The host's row under a lock of ``session`` (another placement holding it)."""
    return HostNode.by_cuuid(session, host, for_update=True)


def _rows(url: str, instance_id: str) -> tuple[Instance, dict[str, tuple[int, int, int]]]:
    """The instance and each host's (used cpu, allocations, alive instances)."""
    with unit_of_work(url, readonly=True) as session:
        inst = Instance.by_cuuid(session, instance_id)
        session.expunge(inst)
        usage = {}
        for host in session.scalars(select(HostNode)):
            allocations = session.scalar(select(func.count()).select_from(HostAllocation)
                                         .where(HostAllocation.host_node_id == host.id))
            alive = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.host_node_id == host.id, Instance.terminated_at.is_(None)))
            usage[host.canonical_uuid] = (host.used_cpu_cores, allocations, alive)
        assert capacity.reconcile(session) == []
        return inst, usage


def _host_id(url: str, host: str) -> int:
    with unit_of_work(url, readonly=True) as session:
        return HostNode.by_cuuid(session, host).id


def test_a_placement_waiting_on_a_host_being_drained_does_not_land_on_it(pg_url, open_session):
    """(1a) The drain holds H; the placement waits on H; the drain commits: the placement
    takes the next host instead of the drained one."""
    (drained, other), [inst_id] = _seed(pg_url, [SLOT(4), SLOT(2)])
    drain, busy = open_session(), open_session()
    hosts.set_host_scheduling(drain, drained, False)  # holds H's row until its commit
    _hold_host(busy, other)  # the other host is busy too: the placement must wait on H
    placing = Placement(pg_url, inst_id)
    placing.start()
    assert _wait_blocked_by(pg_url, _pid(drain), placing), "the placement did not wait on H"
    drain.commit()
    _wait_blocked_by(pg_url, _pid(busy), placing)  # now on the other host (if not done)
    busy.rollback()
    answer = placing.finish()
    inst, usage = _rows(pg_url, inst_id)
    assert inst.host_node_id != _host_id(pg_url, drained), "placed on the drained host"
    assert answer["outcome"] == "placed" and answer["host_node_id"] == other
    assert usage[drained] == (0, 0, 0) and usage[other] == (1, 1, 1)


def test_a_placement_that_waited_never_claims_a_host_evacuated_meanwhile(pg_url, open_session,
                                                                        tmp_path):
    """(1b) The placement waits on X; H goes offline and is evacuated; X fills: the
    placement fails rather than put a new instance on the offline, evacuated H (where the
    next offline event would leave it, the outage being 'already evacuated')."""
    (first, evacuated), [inst_id, filler_id] = _seed(pg_url, [SLOT(4), SLOT(2)], waiting=2)
    filling, holding = open_session(), open_session()
    # X: another placement is claiming X's remaining room (not committed yet).
    filler = Instance.by_cuuid(filling, filler_id, for_update=True)
    filler.cpu_cores, filler.memory_size = 4, 4096
    assert capacity.claim_host(filling, _host_id(pg_url, first), filler, 0)
    _hold_host(holding, evacuated)  # H is busy for a moment: ranked, but not claimable
    placing = Placement(pg_url, inst_id)
    placing.start()
    assert _wait_blocked_by(pg_url, _pid(filling), placing), "the placement did not wait on X"
    holding.rollback()
    with unit_of_work(pg_url) as session:  # H's node goes offline (the sweep's commit)
        node_id = HostNode.by_cuuid(session, evacuated).node_id
        session.execute(update(NodeState).where(NodeState.node_id == node_id)
                        .values(state="offline"))
    conf = Path(tmp_path / "scheduler.toml")
    conf.write_text("evacuate_on_node_offline = true\n")
    config.reload_scheduler_config(str(conf))
    try:
        with unit_of_work(pg_url) as session:  # its offline event: H evacuated, disabled
            assert "scheduled" in evacuation.on_node_offline(session, [node_id], "test")
        filling.commit()  # X is full now
        answer = placing.finish()
        with unit_of_work(pg_url) as session:  # the next offline event of this outage
            again = evacuation.on_node_offline(session, [node_id], "test")
    finally:
        config.reload_scheduler_config(None)
    inst, usage = _rows(pg_url, inst_id)
    assert inst.host_node_id != _host_id(pg_url, evacuated), \
        f"{inst_id} is {inst.state} on the offline, evacuated host"
    assert answer["outcome"] == "failed" and answer["error_type"] == "InsufficientCapacity"
    assert usage[evacuated] == (0, 0, 0) and usage[first] == (4, 1, 1)
    assert again == {"node_id": node_id, "skipped": "this outage was already evacuated"}


def _silent(url: str, host: str, seconds: int = 100) -> str:
    """The host's node last heard ``seconds`` ago (still ``online``: no sweep yet)."""
    with unit_of_work(url) as session:
        node_id = HostNode.by_cuuid(session, host).node_id
        session.execute(update(NodeState).where(NodeState.node_id == node_id).values(
            last_ping_at=db_now(session) - timedelta(seconds=seconds)))
    return node_id


def test_a_claim_waits_for_a_sweep_marking_the_node_offline_and_then_refuses(pg_url,
                                                                            open_session):
    """The sweep holds H's node row (marked offline, not committed); the placement waits
    for it in its claim; the sweep commits: the placement does not take H."""
    [host], [inst_id] = _seed(pg_url, [SLOT(4)])
    node_id = _silent(pg_url, host)
    sweep = open_session()
    assert node_id in node_states.sweep_node_states(sweep)["offline"]
    placing = Placement(pg_url, inst_id)
    placing.start()
    assert _wait_blocked_by(pg_url, _pid(sweep), placing), \
        "the claim did not wait for the sweep's node row"
    sweep.commit()
    answer = placing.finish()
    inst, usage = _rows(pg_url, inst_id)
    assert inst.host_node_id is None and usage[host] == (0, 0, 0)
    assert answer["outcome"] == "failed" and answer["error_type"] == "NoMatchingHostNode"


def test_a_sweep_during_an_uncommitted_claim_leaves_the_node_to_its_next_run(pg_url,
                                                                             open_session):
    """The claim keeps its node online until it commits: a sweep meanwhile skips the node
    (it is never offline under a claim being committed); the next sweep marks it offline."""
    [host], [inst_id] = _seed(pg_url, [SLOT(4)])
    node_id = _silent(pg_url, host)
    claiming = open_session()
    inst = Instance.by_cuuid(claiming, inst_id, for_update=True)
    assert capacity.claim_host(claiming, _host_id(pg_url, host), inst, 0)
    with unit_of_work(pg_url) as session:
        assert node_id not in node_states.sweep_node_states(session)["offline"]
    claiming.commit()
    with unit_of_work(pg_url) as session:
        assert node_id in node_states.sweep_node_states(session)["offline"]
    inst, usage = _rows(pg_url, inst_id)
    assert usage[host] == (1, 1, 1)


def test_a_claim_waiting_behind_a_lowered_ratio_obeys_the_new_one(pg_url, open_session):
    """The host offers 2 cores x 2.0 and runs 2 instances; an operator lowers its ratio to
    1.0 (holding the row); the placement of a third waits on it; the change commits: the
    claim, re-checked on the row's new version, is refused; the two stay."""
    [host], waiting = _seed(pg_url, [placement.HostSize(2, 8192, 8192)], waiting=3)
    with unit_of_work(pg_url) as session:
        hosts.set_host_allocation_ratios(session, host, cpu=2.0)
    for inst_id in waiting[:2]:
        with unit_of_work(pg_url) as session:
            assert handlers.schedule_instance(session, inst_id)["outcome"] == "placed"
    lowering = open_session()
    row = hosts.set_host_allocation_ratios(lowering, host, cpu=1.0)  # holds H until commit
    assert row["cpu_cores"] == {"used": 2, "total": 2}
    placing = Placement(pg_url, waiting[2])
    placing.start()
    assert _wait_blocked_by(pg_url, _pid(lowering), placing), "the claim did not wait on H"
    lowering.commit()
    answer = placing.finish()
    inst, usage = _rows(pg_url, waiting[2])
    assert (answer["outcome"], answer["error_type"]) == ("failed", "InsufficientCapacity")
    assert answer["message"] == (f"0/1 hosts available for {waiting[2]} (1 cpu cores, 1024 MB "
                                 f"memory, 1024 MB local disk, x86_64 {_hypervisor(pg_url)}): "
                                 "1 short of cpu")
    assert inst.host_node_id is None and usage[host] == (2, 2, 2)


def _hypervisor(url: str) -> str:
    with unit_of_work(url, readonly=True) as session:
        return session.scalars(select(HostNode.hypervisor)).one()
