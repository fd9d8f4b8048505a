"""The event hook's subscriptions (role ``events``, queue ``events.event-hook``)."""

from collector.services import event_hook
from tasks.event_bus import subscribe

subscribe("event-hook", "hva/instance_terminated")(event_hook.on_instance_terminated)
