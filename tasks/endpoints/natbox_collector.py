"""``natbox-collector.*`` tasks."""

from collector.services import natbox
from tasks.registry import Endpoint

endpoint = Endpoint("natbox-collector").expose(
    natbox.get_network_route, natbox.get_alive_network_routes)
