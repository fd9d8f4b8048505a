"""``resource-collector.*`` tasks: resource samples stored and queried."""

from collector import wire
from collector.services import resource
from tasks.registry import Endpoint

endpoint = Endpoint(wire.RESOURCE_COLLECTOR).reads(
    resource.get_resource_samples).writes(resource.resource_store)
