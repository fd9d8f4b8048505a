"""``alarm-collector.*`` tasks and the alarm side of instance events."""

from collector.services import alarm
from tasks.event_bus import subscribe
from tasks.registry import Endpoint

endpoint = Endpoint("alarm-collector").expose(
    alarm.get_alarm, alarm.get_alarms, alarm.get_resource_alarms, alarm.get_log_alarms,
    alarm.update_alarm,
)

subscribe("alarm-collector", "hva/instance_terminated")(alarm.on_instance_terminated)
subscribe("alarm-collector", "hva/instance_turnedoff")(alarm.on_instance_turnedoff)
subscribe("alarm-collector", "hva/instance_started")(alarm.on_instance_started)
subscribe("alarm-collector", "hva/instance_turnedon")(alarm.on_instance_turnedon)
