"""``natbox-collector.*`` tasks: what NAT boxes call."""

from collector import wire
from collector.services import natbox
from tasks.registry import Endpoint

endpoint = Endpoint(wire.NATBOX_COLLECTOR).reads(
    natbox.get_network_route, natbox.get_alive_network_routes)
