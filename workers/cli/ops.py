"""``collector stats``: the operator's figures, as tables or JSON."""

from __future__ import annotations

import click

from collector.config import load_settings
from workers.cli.api_client import print_json
from workers.tables import print_nodes, table


def _read(fn):  # noqa: ANN001, ANN202 - a domain reader and its answer
    from collector.db import unit_of_work

    with unit_of_work(load_settings().database_url, readonly=True) as session:
        return fn(session)


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def stats(as_json: bool) -> None:
    """Jobs per queue (pending, running, failed...), outbox backlog, node and instance states."""
    from collector.services.stats import collector_stats

    figures = _read(collector_stats)
    if as_json:
        print_json(figures)
        return
    kinds = ["held", "pending", "running", "succeeded", "failed", "cancelled"]
    table("jobs", ["queue", *kinds],
           [[q, *(c.get(k, 0) for k in kinds)] for q, c in figures["jobs"].items()])
    outbox = figures["outbox"]
    age = outbox["oldest_unsent_age_sec"]
    table("outbox", ["unsent", "oldest unsent (s)"],
           [[outbox["unsent"], None if age is None else f"{age:.1f}"]])
    table("nodes", ["state", "count"], [[s, n] for s, n in sorted(figures["nodes"].items())])
    table("instances", ["state", "count"],
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
    from collector.db.migrate import upgrade
    from workers.demo.world.datacenter import seed_datacenter

    settings = load_settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    with unit_of_work(settings.database_url) as session:
        world = seed_datacenter(session, hosts=hosts, prefix=prefix, hypervisor=hypervisor)
    if as_json:
        print_json(world)
        return
    table("seeded datacenter", ["what", "ids"],
           [[key, ", ".join(v) if isinstance(v, list) else
             ", ".join(f"{k}={i}" for k, i in v.items()) if isinstance(v, dict) else v]
            for key, v in world.items()])


@click.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def nodes(as_json: bool) -> None:
    """Hosts and storage nodes: state, last heartbeat, capacity used of what each offers
    (a host's cpu and memory: physical x allocation ratio, both shown)."""
    from collector.services.stats import node_overview

    rows = _read(node_overview)
    if as_json:
        print_json(rows)
        return
    print_nodes(rows)
