"""``maintenance.*``: every periodic task, run by beat on the ``maintenance`` queue (the
schedule is in ``celeryconfig``). Each is safe to run twice."""

from __future__ import annotations

from collector import wire
from collector.config import load_settings
from collector.db import job_states
from collector.scheduling import redrive
from collector.services import event_receipts, maintenance, node_states, resource
from collector.services.jobs import ledger, reconcile, redelivery
from tasks import event_bus, relay
from tasks.app import app
from tasks.endpoints.jobqueue_proxy import final_outcome
from tasks.execution import run_in_unit_of_work
from tasks.worker_sweeper import register_pass


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


@periodic(wire.Maintenance.REDELIVER_JOBS)
def redeliver_jobs() -> list[str]:
    """Send again the jobs no agent took within their deadline; their ids."""
    return run_in_unit_of_work(redelivery.redeliver_untaken)


@register_pass
def redeliver_due_jobs() -> list[str]:
    """Every worker's pass of ``redeliver_jobs``: it writes only when a job is due."""
    if not run_in_unit_of_work(redelivery.any_due, readonly=True):
        return []
    return run_in_unit_of_work(redelivery.redeliver_untaken)


@periodic(wire.Maintenance.RESEND_EVENTS)
def resend_events() -> int:
    """Send again, under the same task id, events with no ``dispatch`` receipt and handler
    messages with no receipt COLLECTOR_EVENT_RESEND_AFTER seconds (30) after they were sent
    (not parked as dead letters, within COLLECTOR_OUTBOX_RETENTION); how many."""
    return event_bus.resend_unconfirmed()


@periodic(wire.Maintenance.RELEASE_HELD_JOBS)
def release_held_jobs() -> list[str]:
    """Send held jobs whose time has come (a boot past its fence timeout); their ids."""
    return run_in_unit_of_work(job_states.release_due)


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
    """Drop outbox rows sent more than COLLECTOR_OUTBOX_RETENTION seconds ago (1 day), and
    event receipts older than twice that (no copy of their message can come any more)."""
    retention = load_settings().outbox_retention
    run_in_unit_of_work(event_receipts.purge_receipts, (2 * retention,))
    return run_in_unit_of_work(maintenance.purge_sent_outbox, (retention,))


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


@periodic(wire.Maintenance.REDRIVE_PLACEMENTS)
def redrive_placements() -> dict:
    """Finish ledger jobs whose outcome callback was lost (from the result backend), then
    place again, or refuse, requests left ``scheduling`` with no live placement job
    (COLLECTOR_REDRIVE_AFTER seconds of grace, COLLECTOR_PLACEMENT_MAX_JOBS tries)."""
    settings = load_settings()
    awaiting = run_in_unit_of_work(reconcile.awaiting_outcome, (settings.redrive_after,),
                                   readonly=True)
    # Read with no transaction open: the backend may keep us waiting.
    outcomes = {seen.job_id: outcome for seen in awaiting
                if (outcome := final_outcome(seen.job_id)) is not None}
    finished = run_in_unit_of_work(reconcile.apply_outcomes, (awaiting, outcomes)) \
        if outcomes else {"succeeded": [], "failed": []}
    # Then the requests, the ledger rows of their jobs as final as this pass made them.
    placed = run_in_unit_of_work(redrive.redrive, (settings.redrive_after,
                                                   settings.placement_max_jobs))
    return {**finished, **placed}
