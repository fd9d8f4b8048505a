"""Periodic maintenance tasks (run by celery beat; each is safe to run twice)."""

from __future__ import annotations

from collector.config import load_settings
from collector.services import maintenance
from tasks import relay
from tasks.app import app
from tasks.execution import run_in_unit_of_work


@app.task(name="maintenance.sweep_outbox", queue="maintenance")
def sweep_outbox() -> int:
    """Publish outbox rows a crash left unsent; returns how many were sent."""
    return relay.sweep(relay.publisher(app.conf.broker_url),
                       older_than=load_settings().outbox_sweep_after)


@app.task(name="maintenance.expire_ip_handles", queue="maintenance")
def expire_ip_handles() -> list[str]:
    """Release IP reservations past their expiry that no vif uses; returns their ids."""
    return run_in_unit_of_work(maintenance.expire_ip_handles)


@app.task(name="maintenance.delete_expired_windows_passwords", queue="maintenance")
def delete_expired_windows_passwords() -> list[str]:
    """Forget Windows passwords past their deletion time; returns the instance ids."""
    return run_in_unit_of_work(maintenance.delete_expired_windows_passwords)


@app.task(name="maintenance.purge_sent_outbox", queue="maintenance")
def purge_sent_outbox() -> int:
    """Drop outbox rows sent more than COLLECTOR_OUTBOX_RETENTION seconds ago (1 day)."""
    return run_in_unit_of_work(maintenance.purge_sent_outbox,
                               (load_settings().outbox_retention,))


@app.task(name="maintenance.purge_finished_jobs", queue="maintenance")
def purge_finished_jobs() -> int:
    """Drop ledger rows finished more than COLLECTOR_JOB_RETENTION seconds ago (30 days)."""
    return run_in_unit_of_work(maintenance.purge_finished_jobs,
                               (load_settings().job_retention,))
