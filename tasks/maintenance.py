"""Periodic maintenance tasks (run by celery beat; each is safe to run twice)."""

from __future__ import annotations

from collector import relay
from collector.config import load_settings
from tasks.app import app


@app.task(name="maintenance.sweep_outbox", queue="maintenance")
def sweep_outbox() -> int:
    """Publish outbox rows a crash left unsent; returns how many were sent."""
    return relay.sweep(relay.publisher(app.conf.broker_url),
                       older_than=load_settings().outbox_sweep_after)
