"""``collector jobs``: the job ledger for operators."""

from __future__ import annotations

import sys

import click

from collector import wire
from collector.config import load_settings
from workers.cli.api_client import print_json


def _ledger():
    from collector.services.jobs import ledger as jobqueue

    return jobqueue


@click.group("jobs")
def jobs() -> None:
    """Inspect and cancel jobs (the job ledger)."""


@jobs.command("list")
@click.option("--queue", "-q", default=None, help="only this queue (hva-handle.hva.demo1)")
@click.option("--state", "-s", type=click.Choice(["pending", "running", "finished"]),
              default=None)
@click.option("--limit", "-n", default=50, show_default=True)
def list_jobs(queue: str | None, state: str | None, limit: int) -> None:
    """Newest jobs first."""
    from collector.db import unit_of_work

    with unit_of_work(load_settings().database_url, readonly=True) as session:
        rows = _ledger().list_jobs(session, queue, state, limit)
    header = f"{'JOB':13} {'STATE':9} {'STATUS':8} {'TRIES':5} {'QUEUE':36} {'JOB NAME':22} CREATED"
    click.echo(header)
    for r in rows:
        click.echo(f"{r['uuid']:13} {r['state']:9} {r['finish_status'] or '-':8} "
                   f"{r['retry_count']:>5} {r['queue_name'][:36]:36} "
                   f"{(r['job_name'] or '-')[:22]:22} {r['created_at']}")


@jobs.command("show")
@click.argument("job_id")
def show(job_id: str) -> None:
    """One job, as JSON."""
    from collector.db import unit_of_work
    from collector.errors import CollectorError

    try:
        with unit_of_work(load_settings().database_url, readonly=True) as session:
            doc = _ledger().find(session, job_id)
    except CollectorError as exc:
        click.echo(f"{exc.error_type}: {exc.message}", err=True)
        sys.exit(1)
    print_json(doc)


@jobs.command("cancel")
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job: a pending one never starts, a running one is revoked."""
    from workers.agent.client import Collector, RpcError

    settings = load_settings()
    if not settings.broker_url:
        raise click.UsageError("set COLLECTOR_BROKER_URL: cancelling goes through the Collector")
    with Collector(settings.broker_url, settings.result_backend) as client:
        try:
            doc = client.rpc(wire.JOBQUEUE_PROXY).cancel(job_id)
        except RpcError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
    click.echo(f"{doc['uuid']} {doc['state']} {doc['finish_status']}")
