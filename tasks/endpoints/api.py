"""``api.*`` tasks: what the original's REST API did for instances, volumes and host
evacuation, callable by name from our client, the CLI, ``celery call`` or Flower (see
``collector.services.api.instances`` and ``collector.services.api.hosts``)."""

from collector.services.api import hosts as api_hosts
from collector.services.api import instances as api
from tasks.registry import Endpoint

endpoint = Endpoint("api").expose(
    api.create_instance,
    api.start_instance,
    api.stop_instance,
    api.terminate_instance,
    api.show_instance,
    api.list_instances,
    api.create_volume,
    api.show_volume,
    api.list_volumes,
    api_hosts.evacuate_host,
    api_hosts.set_host_scheduling,
)
