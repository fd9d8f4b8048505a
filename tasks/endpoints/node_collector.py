"""``node-collector.*`` tasks: agents' heartbeats and the node list."""

from collector import wire
from collector.services import node_states
from tasks.registry import Endpoint

endpoint = Endpoint(wire.NODE_COLLECTOR).reads(list=node_states.list_nodes).writes(
    node_states.notify)
