"""Who may call what (``collector.services.authorization``): the rights table stays true
to the endpoints, and a node may call a task only on what is its own, checked against a
real database with a session alone."""

from __future__ import annotations

import importlib
import inspect
from types import SimpleNamespace

import pytest

from collector import wire
from collector.errors import Unauthorized
from collector.models import ISCSI, MigrationAllocation, QueuedJob
from collector.services.authorization import (
    EVERY_NODE,
    RIGHTS,
    Caller,
    check,
    may_call,
    may_publish,
)
from workers.demo.world import make

# Binding the registry's tasks (``app.tasks``) warns that Celery 6 drops the ``queue`` task
# attribute; nothing here depends on it.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")

NODES = [Caller("hva.a"), Caller("sta.s"), Caller("natbox.n")]
TRUSTED = [Caller("operator"), Caller("collector"), None]


@pytest.fixture(scope="module")
def exposed():
    """Task name -> domain function, for every task of the Collector."""
    from tasks.app import TASK_MODULES

    for module in TASK_MODULES:
        importlib.import_module(module)
    from tasks.registry import EXPOSED

    assert len(EXPOSED) > 50  # the registry filled, not an empty dict compared with
    return EXPOSED


# --- The table cannot drift from the endpoints ----------------------------------------

def test_every_task_in_the_rights_table_exists(exposed):
    from tasks.app import app

    endpoints = {name.rsplit(".", 1)[0] for name in exposed}
    missing = []
    for task in RIGHTS:
        if task in exposed:
            continue
        endpoint, _, method = task.rpartition(".")
        if method == wire.PING and endpoint in endpoints:
            continue  # every endpoint registers its ping (tasks.registry)
        if task == wire.EVENT_DELIVER and task in app.tasks:
            continue
        missing.append(task)
    assert missing == []


def test_every_owned_argument_is_a_parameter_of_its_domain_function(exposed):
    wrong = []
    for task, right in RIGHTS.items():
        assert set(right.kinds) <= set(EVERY_NODE), task
        if right.owns is None:
            continue
        assert right.belongs is not None, task
        parameters = list(inspect.signature(exposed[task]).parameters)
        if right.owns not in parameters[1:]:  # after the session
            wrong.append((task, right.owns, parameters))
    assert wrong == []


def test_the_rights_table_covers_the_agents_calls_and_nothing_of_the_api(exposed):
    assert not [task for task in RIGHTS if task.startswith(
        (f"{wire.API}.", f"{wire.SCHEDULER}.", f"{wire.MAINTENANCE}."))]
    for task in ("hva-collector.update_instance", "sta-collector.update_volume",
                 "jobqueue-proxy.running", "node-collector.notify"):
        assert task in RIGHTS and task in exposed


# --- A small world: two hosts, a storage node, a job on B's queue ---------------------

@pytest.fixture()
def world(session):
    host_a = make.host_node(session, "hva.a")
    host_b = make.host_node(session, "hva.b")
    inst_a = make.instance(session, host_a)
    inst_b = make.instance(session, host_b)
    vif_a = make.vif(session, inst_a, None)
    storage = make.storage_node(session, "sta.s")
    other_storage = make.storage_node(session, "sta.t")
    volume = make.volume(session, None, ISCSI, node=storage)
    job = QueuedJob(queue_name="hva-handle.hva.b", job_name="reboot", state="pending",
                    params={}, retry_max=0, retry_count=0, delivery_count=0)
    # B's instance in a live migration to A: A holds its destination claim.
    migrating = make.instance(session, host_b, state="migrating")
    session.add_all([job, MigrationAllocation(instance_id=migrating.id, host_node_id=host_a.id,
                                              cpu_cores=1, memory_size=1024, disk_bytes=0)])
    session.flush()
    return SimpleNamespace(inst_a=inst_a.canonical_uuid, inst_b=inst_b.canonical_uuid,
                           migrating=migrating.canonical_uuid,
                           vif_a=vif_a.canonical_uuid, volume=volume.canonical_uuid,
                           other_storage=other_storage, job=job.canonical_uuid)


def _check(session, exposed, principal, task, *args, **kwargs):
    check(session, Caller(principal), task, exposed[task], args, kwargs)


def test_a_host_may_update_its_own_instance_only(session, exposed, world):
    task = "hva-collector.update_instance"
    _check(session, exposed, "hva.a", task, world.inst_a, {"state": "running"})
    _check(session, exposed, "hva.a", task, instance_id=world.inst_a, data={})
    _check(session, exposed, "hva.b", task, world.inst_b, {})
    with pytest.raises(Unauthorized, match="hva.a may not"):
        _check(session, exposed, "hva.a", task, world.inst_b, {"state": "terminated"})
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.a", task, data={}, instance_id=world.inst_b)
    with pytest.raises(Unauthorized):  # an id that names nothing is nobody's
        _check(session, exposed, "hva.a", task, "i-zzzzzzzz", {})
    with pytest.raises(Unauthorized):  # a storage node may read an instance, not update it
        _check(session, exposed, "sta.s", task, world.inst_a, {})


def test_the_destination_of_a_live_migration_may_switch_the_instance_to_itself(
        session, exposed, world):
    task = "hva-collector.switch_instance_host_node"
    _check(session, exposed, "hva.a", task, world.migrating, "hva.a", 1)
    # ... and may update it meanwhile (it receives it), as may its source.
    _check(session, exposed, "hva.a", "hva-collector.update_instance", world.migrating, {})
    _check(session, exposed, "hva.b", "hva-collector.update_instance", world.migrating, {})


def test_a_host_may_not_switch_an_instance_to_another_host(session, exposed, world):
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.a", "hva-collector.switch_instance_host_node",
               world.inst_a, "hva.b")


def test_a_host_may_not_take_another_hosts_instance(session, exposed, world):
    """B's instance, in no migration: A switching it to itself would make it A's (and
    then A could update, finalize and read the vnics of an instance it never ran)."""
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.a", "hva-collector.switch_instance_host_node",
               world.inst_b, "hva.a")


def test_a_host_may_read_the_vnics_of_its_own_instances_only(session, exposed, world):
    _check(session, exposed, "hva.a", "hva-collector.get_nic", world.vif_a)
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.b", "hva-collector.get_nic", world.vif_a)


def test_a_storage_node_may_update_the_volumes_it_holds_only(session, exposed, world):
    task = "sta-collector.update_volume"
    _check(session, exposed, "sta.s", task, world.volume, {"state": "available"})
    assert world.other_storage.node_id == "sta.t"
    with pytest.raises(Unauthorized, match="sta.t may not"):
        _check(session, exposed, "sta.t", task, world.volume, {"state": "deleted"})
    with pytest.raises(Unauthorized):  # a host with no instance on that volume
        _check(session, exposed, "hva.a", task, world.volume, {})


def test_a_job_of_a_nodes_queue_is_that_nodes_alone(session, exposed, world):
    task = "jobqueue-proxy.running"
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.a", task, world.job, "hva.a")
    _check(session, exposed, "hva.b", task, world.job, "hva.b")
    with pytest.raises(Unauthorized):  # a job that does not exist belongs to nobody
        _check(session, exposed, "hva.b", task, "job-zzzzzzzz", "hva.b")


def test_a_node_sends_its_own_heartbeat_only(session, exposed, world):
    task = "node-collector.notify"
    _check(session, exposed, "hva.a", task, "hva.a", "boot-1")
    with pytest.raises(Unauthorized):
        _check(session, exposed, "hva.a", task, "hva.b", "boot-1")
    with pytest.raises(Unauthorized):
        _check(session, exposed, "sta.s", task, node_id="hva.a", boot_token="boot-1")


def _collector_only(exposed) -> list[str]:
    api = sorted(task for task in exposed if task.startswith(f"{wire.API}."))
    assert "api.create_instance" in api
    assert wire.Maintenance.REAP_JOBS == "maintenance.reap_jobs"
    return [wire.Maintenance.REAP_JOBS, *api]


@pytest.mark.parametrize("caller", NODES, ids=lambda c: c.principal)
def test_no_node_may_call_the_collectors_own_tasks(session, exposed, caller):
    for task in _collector_only(exposed):
        assert not may_call(caller, task), task
        with pytest.raises(Unauthorized):
            check(session, caller, task, exposed.get(task, lambda session: None), (), {})


@pytest.mark.parametrize("caller", TRUSTED, ids=lambda c: c.principal if c else "in-process")
def test_the_collector_and_the_operator_may_call_everything(session, exposed, world,
                                                             caller):
    for task in _collector_only(exposed):
        assert may_call(caller, task), task
        check(session, caller, task, exposed.get(task, lambda session: None), (), {})
    # ... and on anything, whoever it belongs to.
    check(session, caller, "hva-collector.update_instance",
          exposed["hva-collector.update_instance"], (world.inst_b, {}), {})


def test_a_principal_that_is_no_node_may_call_nothing():
    stranger = Caller("garbage")
    assert not stranger.trusted and not stranger.is_node
    assert not may_call(stranger, "node-collector.notify")
    assert not may_call(stranger, "hva-collector.ping")


def test_a_node_may_call_the_tasks_of_its_kind_only():
    assert may_call(Caller("hva.a"), "hva-collector.update_instance")
    assert not may_call(Caller("sta.s"), "hva-collector.update_instance")
    assert not may_call(Caller("natbox.n"), "sta-collector.update_volume")
    assert not may_call(Caller("hva.a"), "sta-collector.update_snapshot")
    assert may_call(Caller("natbox.n"), "natbox-collector.get_network_route")
    assert not may_call(Caller("hva.a"), "natbox-collector.get_network_route")


# --- Events ---------------------------------------------------------------------------

def test_a_host_publishes_its_own_events_as_itself():
    may_publish(Caller("hva.a"), wire.HvaEvent.INSTANCE_TERMINATED, "hva.a")
    may_publish(Caller("hva.a"), "hva/instance_started", "hva.a")


@pytest.mark.parametrize(("principal", "event", "sender"), [
    ("hva.a", wire.HvaEvent.INSTANCE_TERMINATED, "hva.b"),
    ("hva.a", wire.HvaEvent.INSTANCE_TERMINATED, "collector.master"),
    ("hva.a", wire.NodeEvent.OFFLINE, "hva.a"),
    ("hva.a", wire.CollectorEvent.INSTANCE_SCHEDULED, "hva.a"),
    ("sta.s", wire.HvaEvent.INSTANCE_TERMINATED, "sta.s"),
    ("natbox.n", wire.HvaEvent.INSTANCE_STARTED, "natbox.n"),
], ids=["as-another-host", "as-the-collector", "node-event", "collector-event",
        "storage-as-host", "natbox-as-host"])
def test_a_node_may_not_publish_as_another_sender_or_another_kinds_event(principal, event,
                                                                         sender):
    with pytest.raises(Unauthorized):
        may_publish(Caller(principal), event, sender)


@pytest.mark.parametrize("caller", TRUSTED, ids=lambda c: c.principal if c else "in-process")
def test_the_collector_and_the_operator_publish_anything(caller):
    may_publish(caller, wire.NodeEvent.OFFLINE, wire.COLLECTOR_SENDER)
    may_publish(caller, wire.HvaEvent.INSTANCE_TERMINATED, "hva.a")
