"""``node-collector.*`` tasks and the liveness sweep."""

from collector.services import node_states
from tasks.app import app
from tasks.execution import run_in_unit_of_work
from tasks.registry import Endpoint

endpoint = Endpoint("node-collector").expose(node_states.notify, list=node_states.list_nodes)


@app.task(name="maintenance.sweep_node_states", queue="maintenance")
def sweep_node_states() -> dict:
    """Age silent nodes (beat runs it every 10 s; safe to run twice)."""
    return run_in_unit_of_work(node_states.sweep_node_states)
