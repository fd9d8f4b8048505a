"""``collector host ...``: host node actions through the ``api`` endpoint.

    collector host evacuate hn-abc12345          # HA instances re-placed, others halted
    collector host disable hn-abc12345           # no new instances placed there
    collector host enable hn-abc12345            # placements again (after an evacuation)
    collector host ratios hn-abc12345 --cpu 2.0 --ram 1.5   # offer 2x its cores, 1.5x its memory
"""

from __future__ import annotations

import click

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
