"""``collector stats``: the operator's figures, as tables or JSON."""

from __future__ import annotations

import json
import sys

import click

from collector.config import load_settings


def _read(fn):  # noqa: ANN001, ANN202 - a domain reader and its answer
    from collector.db import unit_of_work

    with unit_of_work(load_settings().database_url, readonly=True) as session:
        return fn(session)


def _table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 150).print(table)


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def stats(as_json: bool) -> None:
    """Jobs per queue (pending, running, failed...), outbox backlog, node and instance states."""
    from collector.services.stats import collector_stats

    figures = _read(collector_stats)
    if as_json:
        click.echo(json.dumps(figures, indent=2, sort_keys=True, default=str))
        return
    kinds = ["pending", "running", "succeeded", "failed", "cancelled"]
    _table("jobs", ["queue", *kinds],
           [[q, *(c.get(k, 0) for k in kinds)] for q, c in figures["jobs"].items()])
    outbox = figures["outbox"]
    age = outbox["oldest_unsent_age_sec"]
    _table("outbox", ["unsent", "oldest unsent (s)"],
           [[outbox["unsent"], None if age is None else f"{age:.1f}"]])
    _table("nodes", ["state", "count"], [[s, n] for s, n in sorted(figures["nodes"].items())])
    _table("instances", ["state", "count"],
           [[s, n] for s, n in sorted(figures["instances"].items())])


@click.command("seed")
@click.option("--hosts", default=4, show_default=True, help="host nodes (two sizes, alternating)")
@click.option("--prefix", default="demo", show_default=True,
              help="node ids hva.<prefix>N, sta.<prefix>1")
@click.option("--hypervisor", default="kvm", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def seed(hosts: int, prefix: str, hypervisor: str, as_json: bool) -> None:
    """Seed a small datacenter: hosts, a storage node, networks, a MAC range, images."""
    from collector.db import unit_of_work
    from collector.migrate import upgrade
    from collector.services.seed import seed_datacenter

    settings = load_settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    with unit_of_work(settings.database_url) as session:
        world = seed_datacenter(session, hosts=hosts, prefix=prefix, hypervisor=hypervisor)
    if as_json:
        click.echo(json.dumps(world, indent=2, sort_keys=True))
        return
    _table("seeded datacenter", ["what", "ids"],
           [[key, ", ".join(v) if isinstance(v, list) else
             ", ".join(f"{k}={i}" for k, i in v.items()) if isinstance(v, dict) else v]
            for key, v in world.items()])


def _used(figure: dict[str, int] | None) -> str | None:
    if not figure:
        return None
    total = figure["total"]
    share = f" ({100 * figure['used'] / total:.0f}%)" if total else ""
    return f"{figure['used']}/{total}{share}"


def print_nodes(nodes: list[dict]) -> None:
    """The node table (also the demo's capacity table)."""
    _table("nodes", ["node", "kind", "state", "last heartbeat", "cpu cores", "memory MB",
                     "disk MB"],
           [[n["node_id"], n["kind"], n["state"], (n["last_heartbeat"] or "-")[11:19],
             _used(n.get("cpu_cores")), _used(n.get("memory_mb")), _used(n.get("disk_mb"))]
            for n in nodes])


@click.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def nodes(as_json: bool) -> None:
    """Hosts and storage nodes: state, last heartbeat, capacity used of total."""
    from collector.services.stats import node_overview

    rows = _read(node_overview)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    print_nodes(rows)
