"""hva/instance_terminated: load balancers forget the instance, its log alarms go."""

from collector.models import Alarm, LoadBalancerTarget, OutboxMessage, QueuedJob, SecurityGroup
from collector.scheduling import teardown
from collector.services import event_hook
from workers.demo.world import make


def _world(session):
    pair = make.load_balanced_pair(session)
    log_alarm = make.alarm(session, pair.backend, "log")
    cpu_alarm = make.alarm(session, pair.backend, "cpu.usage")
    return pair.lb, pair.lb_vm, pair.backend, pair.group, log_alarm, cpu_alarm


def test_terminated_instance_leaves_its_load_balancers_and_loses_its_log_alarms(session):
    lb, lb_vm, backend, group, log_alarm, cpu_alarm = _world(session)
    teardown.finalize_instance(session, backend)
    result = event_hook.on_instance_terminated(session, [backend.canonical_uuid], "hva.x")
    assert result["load_balancers"] == [lb.canonical_uuid]
    alive = [t for t in session.query(LoadBalancerTarget).filter_by(load_balancer_id=lb.id)
             if t.deleted_at is None]
    assert len(alive) == 1 and alive[0].fallback_mode == "on"
    assert session.get(SecurityGroup, group.id) is None  # the per-target group is gone
    config = session.query(OutboxMessage).filter_by(
        queue=f"loadbalancer.{lb_vm.canonical_uuid}").one().payload["args"][0]
    assert config["servers"] == [{"ipv4": "10.1.0.21", "backup": True}]
    assert config["ports"] == [80] and config["name"] == "reload:haproxy"
    assert session.get(Alarm, log_alarm.id).deleted_at is not None
    assert session.get(Alarm, cpu_alarm.id).deleted_at is None
    job = session.query(QueuedJob).filter_by(
        queue_name=f"log-alarm-registry.{backend.host_node.node_id}").one()
    assert job.job_name == "delete_alarms"
    assert job.params["args"] == [[log_alarm.canonical_uuid]]
    # A repeat of the event changes nothing and sends nothing more.
    again = event_hook.on_instance_terminated(session, [backend.canonical_uuid], "hva.x")
    assert again == {"load_balancers": [], "log_alarms": []}


def test_stopped_instance_keeps_its_load_balancers_and_alarms(session):
    lb, _, backend, _, log_alarm, _ = _world(session)
    backend.state = "stopped"
    assert event_hook.on_instance_terminated(session, [backend.canonical_uuid], "hva.x") == {
        "skipped": "stopped"}
    assert session.get(Alarm, log_alarm.id).deleted_at is None
    assert all(t.deleted_at is None for t in session.query(LoadBalancerTarget).filter_by(
        load_balancer_id=lb.id))


def test_unknown_or_malformed_instance_is_ignored(session):
    assert event_hook.on_instance_terminated(session, ["i-zzzzzzzz"], "hva.x") == {}
    assert event_hook.on_instance_terminated(session, [], "hva.x") == {}
    assert event_hook.on_instance_terminated(session, ["vol-12345678"], "hva.x") == {}
