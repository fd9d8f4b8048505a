"""``api.*`` tasks: what the original's REST API did for instances and volumes, callable by
name from our client, the CLI, ``celery call`` or Flower (see ``collector.services.api``)."""

from collector.services import api
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
)
