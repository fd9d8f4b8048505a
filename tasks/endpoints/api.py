"""``api.*`` tasks: what the original's REST API did for instances (live migration
included), volumes and host evacuation, callable by name from our client, the CLI, ``celery call`` or Flower (see
``collector.services.api``: ``requests`` says what a request may contain; ``instances``,
``volumes`` and ``hosts`` act on it)."""

from collector import wire
from collector.services.api import hosts, instances, placement_groups, volumes
from tasks.registry import Endpoint

endpoint = Endpoint(wire.API).reads(
    instances.show_instance,
    instances.list_instances,
    volumes.show_volume,
    volumes.list_volumes,
    placement_groups.show_placement_group,
    placement_groups.list_placement_groups,
).writes(
    instances.create_instance,
    instances.create_instances,
    instances.start_instance,
    instances.stop_instance,
    instances.terminate_instance,
    instances.migrate_instance,
    volumes.create_volume,
    hosts.evacuate_host,
    hosts.set_host_scheduling,
    hosts.set_host_allocation_ratios,
    placement_groups.create_placement_group,
    placement_groups.delete_placement_group,
)
