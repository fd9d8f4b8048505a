"""``collector host ...``: host node actions through the ``api`` endpoint.

    collector host evacuate hn-abc12345          # HA instances re-placed, others halted
    collector host disable hn-abc12345           # no new instances placed there
    collector host enable hn-abc12345            # placements again (after an evacuation)
"""

from __future__ import annotations

import click

from workers.cli.api_client import api_client, api_options, call_api, print_json


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
