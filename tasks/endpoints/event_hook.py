"""The event hook's subscriptions (served by the ``events`` role, queue
``events.event-hook``)."""

from collector import wire
from collector.services import event_hook
from tasks.event_bus import subscribe

subscribe(wire.EVENT_HOOK, wire.HvaEvent.INSTANCE_TERMINATED)(event_hook.on_instance_terminated)
