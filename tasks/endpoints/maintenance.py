"""``maintenance.*``: every periodic task, run by beat on the ``maintenance`` queue (the
schedule is in ``celeryconfig``). Each is safe to run twice."""

from __future__ import annotations

from collector import wire
from collector.config import load_settings
from collector.services import maintenance, node_states, resource
from collector.services.jobs import ledger
from tasks import relay
from tasks.app import app
from tasks.execution import run_in_unit_of_work


def periodic(name: str):  # noqa: ANN201 - Celery's task decorator
    """A beat task served from the maintenance queue."""
    return app.task(name=name, queue=wire.MAINTENANCE)


@periodic(wire.Maintenance.SWEEP_OUTBOX)
def sweep_outbox() -> int:
    """Publish outbox rows a crash left unsent; returns how many were sent."""
    return relay.sweep(relay.publisher(app.conf.broker_url),
                       older_than=load_settings().outbox_sweep_after)


@periodic(wire.Maintenance.REAP_JOBS)
def reap_jobs() -> dict:
    """Jobs whose worker died: pushed again or failed."""
    return run_in_unit_of_work(ledger.reap)


@periodic(wire.Maintenance.SWEEP_NODE_STATES)
def sweep_node_states() -> dict:
    """Age silent nodes (``timeout``, then ``offline``)."""
    return run_in_unit_of_work(node_states.sweep_node_states)


@periodic(wire.Maintenance.EXPIRE_IP_HANDLES)
def expire_ip_handles() -> list[str]:
    """Release IP reservations past their expiry that no vif uses; returns their ids."""
    return run_in_unit_of_work(maintenance.expire_ip_handles)


@periodic(wire.Maintenance.DELETE_EXPIRED_WINDOWS_PASSWORDS)
def delete_expired_windows_passwords() -> list[str]:
    """Forget Windows passwords past their deletion time; returns the instance ids."""
    return run_in_unit_of_work(maintenance.delete_expired_windows_passwords)


@periodic(wire.Maintenance.PURGE_SENT_OUTBOX)
def purge_sent_outbox() -> int:
    """Drop outbox rows sent more than COLLECTOR_OUTBOX_RETENTION seconds ago (1 day)."""
    return run_in_unit_of_work(maintenance.purge_sent_outbox,
                               (load_settings().outbox_retention,))


@periodic(wire.Maintenance.PURGE_FINISHED_JOBS)
def purge_finished_jobs() -> int:
    """Drop ledger rows finished more than COLLECTOR_JOB_RETENTION seconds ago (30 days)."""
    return run_in_unit_of_work(maintenance.purge_finished_jobs,
                               (load_settings().job_retention,))


@periodic(wire.Maintenance.PURGE_RESOURCE_SAMPLES)
def purge_resource_samples() -> int:
    """Drop samples older than COLLECTOR_RESOURCE_RETENTION seconds (default 7 days)."""
    return run_in_unit_of_work(resource.purge_resource_samples,
                               (load_settings().resource_retention,))
