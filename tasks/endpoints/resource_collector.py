"""``resource-collector.*`` tasks and the samples' retention."""

from collector.config import load_settings
from collector.services import resource
from tasks.app import app
from tasks.execution import run_in_unit_of_work
from tasks.registry import Endpoint

endpoint = Endpoint("resource-collector").expose(
    resource.resource_store, resource.get_resource_samples)


@app.task(name="maintenance.purge_resource_samples", queue="maintenance")
def purge_resource_samples() -> int:
    """Drop samples older than COLLECTOR_RESOURCE_RETENTION seconds (default 7 days)."""
    return run_in_unit_of_work(resource.purge_resource_samples,
                               (load_settings().resource_retention,))
