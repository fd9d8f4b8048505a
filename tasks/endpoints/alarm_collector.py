"""``alarm-collector.*`` tasks and the alarm side of instance events (queue
``events.alarm-collector``)."""

from collector import wire
from collector.services import alarm
from tasks.event_bus import subscribe
from tasks.registry import Endpoint

endpoint = Endpoint(wire.ALARM_COLLECTOR).reads(
    alarm.get_alarm, alarm.get_alarms, alarm.get_resource_alarms, alarm.get_log_alarms,
).writes(alarm.update_alarm)

subscribe(wire.ALARM_COLLECTOR, wire.HvaEvent.INSTANCE_TERMINATED)(alarm.on_instance_terminated)
subscribe(wire.ALARM_COLLECTOR, wire.HvaEvent.INSTANCE_TURNEDOFF)(alarm.on_instance_turnedoff)
subscribe(wire.ALARM_COLLECTOR, wire.HvaEvent.INSTANCE_STARTED)(alarm.on_instance_started)
subscribe(wire.ALARM_COLLECTOR, wire.HvaEvent.INSTANCE_TURNEDON)(alarm.on_instance_turnedon)
