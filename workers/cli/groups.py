"""``collector group ...``: placement groups through the ``api`` endpoint.

    collector group create web --policy anti-affinity [--max-per-host 2]
    collector group list / show pg-abc12345 / delete pg-abc12345
    collector instance run ... --group pg-abc12345      # a member of the group
"""

from __future__ import annotations

from typing import Any

import click

from workers.cli.api_client import api_client, api_options, call_api, print_json, print_listing


@click.group("group")
def group() -> None:
    """Placement groups: instances together (affinity) or apart (anti-affinity)."""


def _line(doc: dict[str, Any]) -> str:
    spread = f" max {doc['max_per_host']}/host" if "anti" in doc["policy"] else ""
    return (f"{doc['id']}  {doc['name']}  {doc['policy']}{spread}  "
            f"{len(doc['members'])} members")


def _show(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(doc)
        return
    click.echo(_line(doc) + ("  (deleted)" if doc.get("deleted_at") else ""))
    for member in doc["members"]:
        click.echo(f"  {member['id']} on {member['host_node_id'] or '-'}")


@group.command("create")
@click.argument("name")
@click.option("--policy", required=True,
              help="affinity, anti-affinity, soft-affinity or soft-anti-affinity")
@click.option("--max-per-host", type=int, default=None,
              help="members one host may hold (anti-affinity policies; default 1)")
@click.option("--account", "account_id", default=None, help="a-... (default a-shpoolxx)")
@api_options
def create(name: str, as_json: bool, timeout: float | None, **options: Any) -> None:
    """Create a placement group; its members are placed by its policy."""
    request = {"name": name, **{k: v for k, v in options.items() if v is not None}}
    with api_client(timeout) as client:
        _show(call_api(client, "create_placement_group", request, as_json=as_json), as_json)


@group.command("list")
@click.option("--account", "account_id", default=None)
@api_options
def list_groups(account_id: str | None, as_json: bool, timeout: float | None) -> None:
    """The placement groups not deleted."""
    with api_client(timeout) as client:
        docs = call_api(client, "list_placement_groups", account_id, as_json=as_json)
    print_listing(docs, as_json, "id  name  policy  members", _line)


def _by_id(method: str, placement_group_id: str, as_json: bool, timeout: float | None) -> None:
    with api_client(timeout) as client:
        _show(call_api(client, method, placement_group_id, as_json=as_json), as_json)


@group.command("show")
@click.argument("placement_group_id")
@api_options
def show(placement_group_id: str, as_json: bool, timeout: float | None) -> None:
    """The group and its alive members with their hosts."""
    _by_id("show_placement_group", placement_group_id, as_json, timeout)


@group.command("delete")
@click.argument("placement_group_id")
@api_options
def delete(placement_group_id: str, as_json: bool, timeout: float | None) -> None:
    """Delete the group (refused while an alive instance is a member)."""
    _by_id("delete_placement_group", placement_group_id, as_json, timeout)
