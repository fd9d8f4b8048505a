"""The alarm side of instance events, with a session alone."""

from collector.models import QueuedJob
from collector.services import alarm
from workers.demo.world import make


def test_turned_off_resets_resource_alarms_and_clears_the_registry(session):
    inst = make.instance(session, make.host_node(session))
    cpu = make.alarm(session, inst, "cpu.usage", state="alarm")
    log = make.alarm(session, inst, "log", state="alarm")
    assert alarm.on_instance_turnedoff(session, [inst.canonical_uuid], "hva.x") == [
        cpu.canonical_uuid]
    assert (cpu.state, log.state) == ("init", "alarm")  # log alarms are not resource alarms
    job = session.query(QueuedJob).filter_by(
        queue_name=f"resource-alarm-registry.{inst.host_node.node_id}").one()
    assert (job.job_name, job.params["args"]) == ("delete_alarms", [[cpu.canonical_uuid]])


def test_started_pushes_enabled_alarms_and_a_stop_keeps_them(session):
    inst = make.instance(session, make.host_node(session))
    on = make.alarm(session, inst, "memory.usage")
    make.alarm(session, inst, "disk.usage", enabled=False)
    assert alarm.on_instance_started(session, [inst.canonical_uuid], "hva.x") == [
        on.canonical_uuid]
    inst.state = "stopped"  # hva emits instance_terminated on stop as well
    assert alarm.on_instance_terminated(session, [inst.canonical_uuid], "hva.x") == []
    assert on.deleted_at is None
    assert alarm.on_instance_started(session, ["i-zzzzzzzz"], "hva.x") == []
