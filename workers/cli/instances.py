"""``collector instance ...`` and ``collector volume ...``: the ``api`` endpoint for operators.

Every command calls an ``api.*`` task through the Collector (broker), so it works from any
machine that reaches the broker. Human tables by default, ``--json`` for JSON; a refused
request prints ``<ErrorType>: <message>`` and exits 1.

    collector instance run --image wmi-demo1 --hypervisor kvm --cpu 1 --memory 512 \\
        --vif eth0=nw-demo1 --wait
    collector instance run --image wmi-demo1 ... --count 10 --min-count 8 --wait
    collector instance stop i-abc12345 --wait
    collector volume create --size 100
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from workers.cli.api_client import api_client, api_options, call_api, print_json, print_listing

VIF_ALIASES = {"ip": "ipv4_addr", "mac": "mac_addr", "nat": "nat_network",
               "nat_ip": "nat_ipv4_addr", "sg": "security_groups"}
VIF_KEYS = ("network", "nat_network", "ipv4_addr", "nat_ipv4_addr", "mac_addr",
            "security_groups", "index")
# --wait: the states that end the wait, per command (a failed placement ends terminated or
# stopped with its reason in placement_error).
RUN_ENDS = ("running", "terminated")
START_ENDS = ("running", "stopped", "terminated")


def _volume_row(doc: dict[str, Any]) -> str:
    return (f"{doc['id']:14} {doc['state']:11} {doc['size'] // (1 << 20):>9} "
            f"{doc['volume_type'] or '-':6} {(doc['node_id'] or '-')[:20]:20} "
            f"{doc['instance_id'] or '-':12} {doc['display_name'] or ''}")


def _addresses(doc: dict[str, Any]) -> str:
    out = []
    for vif in doc["vif"]:
        if vif["ipv4_addr"]:
            out.append(vif["ipv4_addr"] + (f"/{vif['nat_ipv4_addr']}"
                                           if vif["nat_ipv4_addr"] else ""))
    return ",".join(out) or "-"


def _instance_row(doc: dict[str, Any]) -> str:
    return (f"{doc['id']:12} {doc['state']:12} {doc['status']:7} "
            f"{(doc['node_id'] or '-')[:20]:20} {doc['cpu_cores']:>3} {doc['memory_size']:>7} "
            f"{doc['image_id']:13} {_addresses(doc)[:31]:31} {doc['display_name'] or ''}")


INSTANCE_HEADER = (f"{'INSTANCE':12} {'STATE':12} {'STATUS':7} {'NODE':20} {'CPU':>3} "
                   f"{'MEM(MB)':>7} {'IMAGE':13} {'ADDRESSES':31} NAME")


def _show_instance(doc: dict[str, Any]) -> None:
    for key in ("id", "state", "status", "host_node", "node_id", "image_id", "arch",
                "hypervisor", "cpu_cores", "memory_size", "hostname", "display_name",
                "service_type", "ha_enabled", "account_id", "placement_error", "created_at",
                "terminated_at"):
        if doc.get(key) not in (None, ""):
            click.echo(f"{key + ':':17}{doc[key]}")
    for vif in doc["vif"]:
        nat = f" nat {vif['nat_network_id']} {vif['nat_ipv4_addr'] or '-'}" \
            if vif["nat_network_id"] else ""
        click.echo(f"{'vif:':17}{vif['vif_id']} #{vif['device_index']} {vif['mac_addr']} "
                   f"{vif['network_id'] or '(no network)'} {vif['ipv4_addr'] or '-'}{nat}")
    for vol in doc["volume"]:
        click.echo(f"{'volume:':17}{vol['vol_id']} {vol['state']} {vol['size']} bytes "
                   f"{vol['volume_type'] or 'unplaced'}{' (boot)' if vol['boot'] else ''}")


def _wait(client: Any, show: str, resource_id: str, ends: tuple[str, ...], timeout: float,
          as_json: bool, first: dict[str, Any]) -> dict[str, Any]:
    """Poll until the resource reaches one of ``ends``, printing each state it passes."""
    doc, seen = first, first["state"]
    deadline = time.monotonic() + timeout
    while doc["state"] not in ends:
        if time.monotonic() > deadline:
            click.echo(f"timed out after {timeout:g}s: {resource_id} is {doc['state']}",
                       err=True)
            sys.exit(2)
        time.sleep(0.25)
        doc = call_api(client, show, resource_id, as_json=as_json)
        if doc["state"] != seen:
            seen = doc["state"]
            if not as_json:
                where = f" on {doc['node_id']}" if doc.get("node_id") else ""
                click.echo(f"{time.strftime('%H:%M:%S')} {resource_id} {seen}{where}")
    return doc


def _request(method: str, argument: Any, show: str, ends: tuple[str, ...], wanted: str,
             wait: bool, wait_timeout: float, as_json: bool, timeout: float | None,
             accepted: str = "") -> None:
    """``api.<method>(argument)``, its answer printed; with ``wait``, followed through
    ``show`` until one of ``ends`` (exit 1 unless it is ``wanted``)."""
    with api_client(timeout) as client:
        doc = call_api(client, method, argument, as_json=as_json)
        if not as_json:
            click.echo(f"{doc['id']} {doc['state']}{accepted}")
        if wait:
            doc = _wait(client, show, doc["id"], ends, wait_timeout, as_json, doc)
    if wait or as_json:
        _finish(doc, as_json, wanted if wait else None)


def _finish(doc: dict[str, Any], as_json: bool, wanted: str | None = None) -> None:
    if as_json:
        print_json(doc)
    else:
        (_show_instance if doc["id"].startswith("i-") else _show_volume)(doc)
    if wanted is not None and doc["state"] != wanted:
        sys.exit(1)


# --- instances ------------------------------------------------------------------------------

def parse_vif(text: str) -> tuple[str, dict[str, Any]]:
    """``eth0=nw-demo1[,ip=10.0.0.5][,mac=525400000001][,nat=nw-x][,sg=sg-a+sg-b]``."""
    name, _, rest = text.partition("=")
    if not name:
        raise click.BadParameter(f"{text!r}: expected NAME=NETWORK[,key=value...]")
    parts = [p for p in rest.split(",") if p] if rest else []
    vif: dict[str, Any] = {}
    if parts and "=" not in parts[0]:
        vif["network"] = parts.pop(0)
    for part in parts:
        key, sep, value = part.partition("=")
        key = VIF_ALIASES.get(key, key)
        if not sep or key not in VIF_KEYS:
            raise click.BadParameter(f"{part!r}: keys are {', '.join(VIF_KEYS)} "
                                     f"(or {', '.join(VIF_ALIASES)})")
        vif[key] = value.split("+") if key == "security_groups" else \
            int(value) if key == "index" and value.isdigit() else value
    return name, vif


def parse_volume(text: str) -> dict[str, Any]:
    """``local:10G``, ``shared:500M`` or ``shared:bo-xxxxxxxx``."""
    kind, sep, what = text.partition(":")
    if not sep or kind not in ("local", "shared") or not what:
        raise click.BadParameter(f"{text!r}: expected local:SIZE, shared:SIZE or shared:bo-...")
    key = "backup_object_id" if what.startswith("bo-") else "size"
    return {"volume_type": kind, key: what}


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE (VALUE as JSON or text)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@click.group("instance")
def instance() -> None:
    """Run, start, stop, terminate and inspect instances (the api endpoint)."""


def _waiting(fn: Callable) -> Callable:
    fn = click.option("--wait", is_flag=True, help="wait for the outcome, printing each state")(fn)
    return click.option("--wait-timeout", type=float, default=300, show_default=True)(fn)


@instance.command("run")
@click.option("--image", "image_id", required=True, help="image id (wmi-...)")
@click.option("--hypervisor", required=True, help="kvm, lxc, openvz, esxi, dummy, ...")
@click.option("--cpu", "cpu_cores", type=int, required=True, help="cpu cores (1..128)")
@click.option("--memory", "memory_size", type=int, required=True, help="MB (128..999999)")
@click.option("--vif", "vifs", multiple=True, metavar="NAME=NETWORK[,k=v]",
              help="a vif, e.g. eth0=nw-demo1 or eth0=nw-demo1,ip=10.0.0.5 (repeatable)")
@click.option("--security-group", "security_groups", multiple=True,
              help="sg-... for every vif (repeatable)")
@click.option("--volume", "volumes", multiple=True, metavar="local:SIZE|shared:SIZE",
              help="an extra volume, e.g. local:10G (repeatable)")
@click.option("--host", "host_node_id", default=None, help="place on this host (hn-...)")
@click.option("--group", "placement_group", default=None,
              help="a member of this placement group (pg-...)")
@click.option("--ha", "ha_enabled", is_flag=True, default=None, help="evacuate on host failure")
@click.option("--hostname", default=None)
@click.option("--name", "display_name", default=None)
@click.option("--ssh-key", "ssh_key_id", default=None, help="ssh-...")
@click.option("--user-data", default=None)
@click.option("--account", "account_id", default=None, help="a-... (default a-shpoolxx)")
@click.option("--service-type", default=None)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="any other request parameter (VALUE as JSON or text)")
@click.option("--count", type=int, default=None,
              help="launch this many instances of the request at once (1..1000)")
@click.option("--min-count", type=int, default=None,
              help="with --count: the fewest placed for any to be (default: all of them)")
@_waiting
@api_options
def run(vifs: tuple[str, ...], security_groups: tuple[str, ...], volumes: tuple[str, ...],
        params: tuple[str, ...], count: int | None, min_count: int | None, wait: bool,
        wait_timeout: float, as_json: bool, timeout: float | None, **options: Any) -> None:
    """Create an instance: it is placed by the scheduler and booted by its host's agent.
    With --count, a bulk launch (api.create_instances): at least --min-count placed or
    none; --wait exits 1 unless that many end running."""
    request = {k: v for k, v in options.items() if v is not None}
    if vifs:
        request["vifs"] = dict(parse_vif(v) for v in vifs)
    if security_groups:
        request["security_groups"] = list(security_groups)
    if volumes:
        request["volumes"] = [parse_volume(v) for v in volumes]
    request.update(parse_params(params))
    if count is None and min_count is None:
        _request("create_instance", request, "show_instance", RUN_ENDS, "running", wait,
                 wait_timeout, as_json, timeout)
    else:
        _launch(request, count or 1, min_count, wait, wait_timeout, as_json, timeout)


def _launch(request: dict[str, Any], count: int, min_count: int | None, wait: bool,
            wait_timeout: float, as_json: bool, timeout: float | None) -> None:
    """``api.create_instances``, each instance printed; with ``wait``, each followed to
    running or terminated (exit 1 when fewer than ``min_count`` run)."""
    with api_client(timeout) as client:
        docs = call_api(client, "create_instances", request, count, min_count, as_json=as_json)
        if not as_json:
            for doc in docs:
                click.echo(f"{doc['id']} {doc['state']}")
        if wait:
            deadline = time.monotonic() + wait_timeout  # one timeout for the whole launch
            docs = [_wait(client, "show_instance", doc["id"], RUN_ENDS,
                          max(deadline - time.monotonic(), 0), as_json, doc) for doc in docs]
    if as_json or wait:
        print_listing(docs, as_json, INSTANCE_HEADER, _instance_row)
    running = sum(doc["state"] == "running" for doc in docs)
    if wait and running < (min_count or count):
        sys.exit(1)


def _instance_action(method: str, ends: tuple[str, ...], wanted: str) -> Callable:
    verb = method.split("_")[0]

    @click.argument("instance_id")
    @_waiting
    @api_options
    def action(instance_id: str, wait: bool, wait_timeout: float, as_json: bool,
               timeout: float | None) -> None:
        _request(method, instance_id, "show_instance", ends, wanted, wait, wait_timeout,
                 as_json, timeout, accepted=f" ({verb} accepted)")
    return action


instance.command("start", help="Start a stopped instance: placed again, then booted.")(
    _instance_action("start_instance", START_ENDS, "running"))
instance.command("stop", help="Stop a running instance (its host and addresses are freed).")(
    _instance_action("stop_instance", ("stopped", "terminated"), "stopped"))
instance.command("terminate", help="Terminate an instance (a pending placement is cancelled).")(
    _instance_action("terminate_instance", ("terminated",), "terminated"))


@instance.command("list")
@click.option("--state", default=None, help="only instances in this state")
@click.option("--all", "include_terminated", is_flag=True, help="terminated ones too")
@click.option("--account", "account_id", default=None)
@click.option("--limit", "-n", default=100, show_default=True)
@api_options
def list_instances(state: str | None, include_terminated: bool, account_id: str | None,
                   limit: int, as_json: bool, timeout: float | None) -> None:
    """Instances, newest first."""
    with api_client(timeout) as client:
        docs = call_api(client, "list_instances", state, account_id, include_terminated, limit,
                     as_json=as_json)
    print_listing(docs, as_json, INSTANCE_HEADER, _instance_row)


@instance.command("show")
@click.argument("instance_id")
@api_options
def show_instance(instance_id: str, as_json: bool, timeout: float | None) -> None:
    """One instance: state, host, addresses, volumes, why a placement failed."""
    with api_client(timeout) as client:
        _finish(call_api(client, "show_instance", instance_id, as_json=as_json), as_json)


# --- volumes --------------------------------------------------------------------------------

def _show_volume(doc: dict[str, Any]) -> None:
    for key in ("id", "state", "status", "size", "volume_type", "storage_node", "node_id",
                "instance_id", "backup_object_id", "display_name", "service_type",
                "account_id", "placement_error", "created_at", "deleted_at"):
        if doc.get(key) not in (None, ""):
            click.echo(f"{key + ':':17}{doc[key]}")


VOLUME_HEADER = (f"{'VOLUME':14} {'STATE':11} {'SIZE(MB)':>9} {'TYPE':6} {'NODE':20} "
                 f"{'INSTANCE':12} NAME")


@click.group("volume")
def volume() -> None:
    """Create and inspect volumes (the api endpoint)."""


@volume.command("create")
@click.option("--size", "volume_size", type=int, default=None, help="MB")
@click.option("--backup-object", "backup_object_id", default=None, help="from bo-...")
@click.option("--storage-node", "storage_node_id", default=None,
              help="create it on this storage node (sn-...) instead of letting it be placed")
@click.option("--name", "display_name", default=None)
@click.option("--account", "account_id", default=None)
@click.option("--service-type", default=None)
@_waiting
@api_options
def create_volume(wait: bool, wait_timeout: float, as_json: bool, timeout: float | None,
                  **options: Any) -> None:
    """Create a shared volume; --wait until it is available (or deleted: not placed)."""
    request = {k: v for k, v in options.items() if v is not None}
    _request("create_volume", request, "show_volume", ("available", "deleted", "failed"),
             "available", wait, wait_timeout, as_json, timeout)


@volume.command("list")
@click.option("--state", default=None)
@click.option("--all", "include_deleted", is_flag=True, help="deleted ones too")
@click.option("--account", "account_id", default=None)
@click.option("--limit", "-n", default=100, show_default=True)
@api_options
def list_volumes(state: str | None, include_deleted: bool, account_id: str | None, limit: int,
                 as_json: bool, timeout: float | None) -> None:
    """Volumes, newest first."""
    with api_client(timeout) as client:
        docs = call_api(client, "list_volumes", state, account_id, include_deleted, limit,
                     as_json=as_json)
    print_listing(docs, as_json, VOLUME_HEADER, _volume_row)
