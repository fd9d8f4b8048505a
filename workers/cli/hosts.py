"""``collector host ...``: host node actions through the ``api`` endpoint.

    collector host evacuate hn-abc12345          # HA instances re-placed, others halted
    collector host disable hn-abc12345           # no new instances placed there
    collector host enable hn-abc12345            # placements again (after an evacuation)
    collector host ratios hn-abc12345 --cpu 2.0 --ram 1.5   # offer 2x its cores, 1.5x its memory
    collector host drain hn-abc12345            # disabled, its running instances live-migrated
"""

from __future__ import annotations

import time
from typing import Any

import click

from collector import wire
from workers.cli.api_client import api_client, api_options, call_api, print_json
from workers.tables import ratio_cell


@click.group("host")
def host() -> None:
    """Host node actions (the api endpoint)."""


@host.command("evacuate")
@click.argument("host_node_id")
@api_options
def evacuate(host_node_id: str, as_json: bool, timeout: float | None) -> None:
    """Move the host's HA instances to other hosts now; its other running instances are
    halted. The host takes placements again afterwards as before (its scheduling flag is
    restored); an instance that found no room is listed as failed with the reason."""
    with api_client(timeout) as client:
        result = call_api(client, "evacuate_host", host_node_id, as_json=as_json)
        if as_json:
            print_json(result)
            return
        for key, label in (("scheduled", "re-placed"), ("failed", "not re-placed"),
                           ("halted", "halted")):
            for instance_id in result.get(key, []):
                line = f"{instance_id} {label}"
                if key != "halted":
                    doc = call_api(client, "show_instance", instance_id)
                    line += f" ({doc['state']} on {doc['node_id'] or '-'})" if key == \
                        "scheduled" else f": {doc['placement_error']}"
                click.echo(line)
        click.echo(f"{host_node_id}: {len(result.get('scheduled', []))} re-placed, "
                   f"{len(result.get('failed', []))} failed, "
                   f"{len(result.get('halted', []))} halted")
    if result.get("failed"):
        raise SystemExit(1)


def _set_scheduling(host_node_id: str, enabled: bool, as_json: bool,
                    timeout: float | None) -> None:
    with api_client(timeout) as client:
        result = call_api(client, "set_host_scheduling", host_node_id, enabled, as_json=as_json)
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['id']} ({result['node_id']}): placements "
               f"{'enabled' if result['scheduling_enabled'] else 'disabled'}")


@host.command("enable")
@click.argument("host_node_id")
@api_options
def enable(host_node_id: str, as_json: bool, timeout: float | None) -> None:
    """Let placement choose the host again (an automatic evacuation leaves it disabled)."""
    _set_scheduling(host_node_id, True, as_json, timeout)


@host.command("disable")
@click.argument("host_node_id")
@api_options
def disable(host_node_id: str, as_json: bool, timeout: float | None) -> None:
    """Keep new instances off the host (drain); what runs there stays."""
    _set_scheduling(host_node_id, False, as_json, timeout)


def _ratio_arg(text: str | None) -> float | str | None:
    """A number goes as a number; anything else ("default", a typo) as it is, for the api
    to accept or refuse with its typed error."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


@host.command("ratios")
@click.argument("host_node_id")
@click.option("--cpu", help='cpu allocation ratio (offered = cores x ratio), or "default"')
@click.option("--ram", help='memory allocation ratio (offered = MB x ratio), or "default"')
@api_options
def ratios(host_node_id: str, cpu: str | None, ram: str | None, as_json: bool,
           timeout: float | None) -> None:
    """Set the host's allocation ratios: placement offers its physical cpu and memory times
    these from now on. A lower ratio moves nothing: it only refuses new instances until the
    host uses less than it offers. "default" follows the scheduler configuration again."""
    with api_client(timeout) as client:
        row = call_api(client, "set_host_allocation_ratios", host_node_id, _ratio_arg(cpu),
                       _ratio_arg(ram), as_json=as_json)
    if as_json:
        print_json(row)
        return
    cpu, memory = row["cpu_cores"], row["memory_mb"]
    click.echo(f"{row['id']} ({row['node_id']}): cpu {ratio_cell(row, 'cpu')} = "
               f"{cpu['total']} offered, {cpu['used']} used; memory MB "
               f"{ratio_cell(row, 'ram')} = {memory['total']} offered, {memory['used']} used")


def _on_host(client: Any, host_node_id: str) -> list[dict[str, Any]]:
    """The live instances the host runs (or is migrating away)."""
    docs = call_api(client, "list_instances", None, None, False, 1000)
    return [d for d in docs if d["host_node"] == host_node_id]


def _start_migrations(client: Any, docs: list[dict[str, Any]]) -> dict[str, str]:
    """``api.migrate_instance`` for each running one; the refusals, by instance."""
    from workers.agent.client import RpcError

    refused = {}
    for doc in docs:
        if doc["state"] != "running":
            continue
        try:
            client.call(wire.API, "migrate_instance", doc["id"])
        except RpcError as exc:
            refused[doc["id"]] = f"{exc.error_type}: {exc.message}"
    return refused


@host.command("drain")
@click.argument("host_node_id")
@click.option("--wait", "wait_sec", type=float, default=600.0, show_default=True,
              help="seconds to wait for the migrations")
@api_options
def drain(host_node_id: str, wait_sec: float, as_json: bool, timeout: float | None) -> None:
    """Disable the host and live-migrate every running instance off it, following them with
    a progress bar until none is migrating; what could not move is listed (exit 1)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with api_client(timeout) as client:
        call_api(client, "set_host_scheduling", host_node_id, False, as_json=as_json)
        docs = _on_host(client, host_node_id)
        wanted = {d["id"] for d in docs if d["state"] in ("running", "migrating")}
        failed = _start_migrations(client, docs)
        deadline = time.monotonic() + wait_sec
        with Progress(TextColumn(f"draining {host_node_id}"), BarColumn(), MofNCompleteColumn(),
                      disable=as_json) as bar:
            task = bar.add_task("drain", total=len(wanted))
            while True:
                left = {d["id"]: d for d in _on_host(client, host_node_id) if d["id"] in wanted}
                bar.update(task, completed=len(wanted) - len(left))
                if not any(d["state"] == "migrating" for d in left.values()) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for instance_id, doc in left.items():
            failed.setdefault(instance_id, doc["placement_error"] or f"still {doc['state']}")
    result = {"host_node_id": host_node_id, "migrated": sorted(wanted - set(left)),
              "failed": failed, "left": len(left)}
    if as_json:
        print_json(result)
    else:
        for instance_id, why in failed.items():
            click.echo(f"{instance_id} not migrated: {why}")
        click.echo(f"{host_node_id}: {len(result['migrated'])} migrated, {len(failed)} failed")
    if failed:
        raise SystemExit(1)
