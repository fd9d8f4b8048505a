"""``collector demo``: a whole datacenter on one command, placed and run by the Collector.

It starts the installation on its embedded defaults (a SQLite file and a Redis server it
starts itself): a worker for every role, a second scheduler worker, beat and Flower; seeds
a datacenter (``collector seed``: 4 hosts of two sizes, a storage node, networks, images);
starts one reference agent per node; then, through ``api.*`` tasks only, it launches
instances and shows them placed and booted, overfills the datacenter, stops and starts,
terminates, creates a volume, and kills a host agent to show liveness and the evacuation
of its HA instance. It ends with tables of instances and capacity, and leaves everything
running until Ctrl-C (``--exit`` stops at once).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector import wire
from workers.agent.client import Collector, RpcError

# A terminal keeps its own width; piped output (a log, CI) gets room for the tables.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
PREFIX = "demo"
HOSTS = 4
# Short liveness timeouts, so a dead agent is noticed within seconds.
DEMO_ENV = {
    "COLLECTOR_NODE_TIMEOUT_SEC": "3", "COLLECTOR_NODE_OFFLINE_SEC": "6",
    "COLLECTOR_OUTBOX_SWEEP_AFTER": "1", "COLLECTOR_JOB_HEARTBEAT_TIMEOUT": "30",
}
SCHEDULER_CONFIG = """\
# The demo's scheduler: the built-in strategies (the original's sample configuration),
# and the HA instances of a host that goes offline placed elsewhere.
evacuate_on_node_offline = true
"""
# (display name, cpu cores, memory MB, image kind, extras)
LAUNCH = [
    ("web-1", 1, 1024, "local", {}), ("web-2", 1, 1024, "local", {}),
    ("web-3", 1, 1024, "local", {}), ("app-1", 2, 2048, "local", {}),
    ("app-2", 2, 2048, "local", {}), ("db-1", 2, 4096, "shared", {"ha_enabled": True}),
    ("db-2", 2, 4096, "shared", {}), ("cache-1", 1, 2048, "local", {}),
    ("router-1", 1, 512, "local", {"two_vifs": True}), ("batch-1", 1, 1024, "local", {}),
    ("pinned-1", 1, 1024, "local", {"pin": 3}), ("ha-web", 1, 1024, "local",
                                                   {"ha_enabled": True}),
]
SURPLUS = [(f"extra-{n}", 2, 4096, "local", {}) for n in range(1, 9)]
# The surplus is refused by the scheduler (placement_error) or, once the online hosts are
# full, by the API itself.
CAPACITY_ERRORS = ("InsufficientCapacity", "OutOfHostCapacity")


class Processes:
    """The demo's child processes, each logging to its own file, stopped together."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start ``python -m *args`` as ``name``; ``env``: its own environment instead."""
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the child
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env or self.env, start_new_session=True)

    def kill(self, name: str) -> None:
        child = self.children[name]
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def _step(title: str) -> None:
    console.print(f"\n[bold cyan]== {title}[/]")


def _wait(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


class Demo:
    def __init__(self, client: Collector, world: dict[str, Any], procs: Processes) -> None:
        self.client, self.world, self.procs = client, world, procs
        self.launched: dict[str, float] = {}  # instance id -> launch time
        self.running_after: dict[str, float] = {}  # instance id -> seconds to running
        self.names: dict[str, str] = {}

    def api(self, method: str, *args: Any) -> Any:
        return self.client.call(wire.API, method, *args)

    def instances(self) -> dict[str, dict]:
        docs = self.api("list_instances", None, None, True, 200)
        now = time.monotonic()
        for doc in docs:
            if doc["state"] == "running" and doc["id"] in self.launched:
                self.running_after.setdefault(doc["id"], now - self.launched[doc["id"]])
        return {d["id"]: d for d in docs}

    def launch(self, name: str, cpu: int, memory: int, kind: str,
               extra: dict[str, Any]) -> str:
        params: dict[str, Any] = {
            "image_id": self.world["images"][kind], "hypervisor": self.world["hypervisor"],
            "cpu_cores": cpu, "memory_size": memory, "display_name": name, "hostname": name,
            "vifs": {"eth0": {"network": self.world["network"],
                              "security_groups": [self.world["security_group"]]}},
        }
        if extra.get("two_vifs"):
            params["vifs"]["eth1"] = {"network": self.world["nat_network"]}
        if extra.get("pin"):
            params["host_node_id"] = self.world["hosts"][extra["pin"] - 1]
        if extra.get("ha_enabled"):
            params["ha_enabled"] = True
        doc = self.api("create_instance", params)
        self.launched[doc["id"]] = time.monotonic()
        self.names[doc["id"]] = name
        return doc["id"]

    def follow(self, ids: list[str], done: tuple[str, ...], title: str,
               timeout: float = 60) -> dict[str, dict]:
        """A live bar while the instances go scheduling -> pending -> initializing -> running."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[states]}"), TimeElapsedColumn())
        deadline = time.monotonic() + timeout
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(title, total=len(ids), states="")
            while True:
                docs = self.instances()
                states: dict[str, int] = {}
                for i in ids:
                    state = docs[i]["state"] if i in docs else "?"
                    states[state] = states.get(state, 0) + 1
                finished = sum(n for s, n in states.items() if s in done)
                bar.update(task, completed=finished,
                           states="  ".join(f"{s}:{n}" for s, n in sorted(states.items())))
                if finished == len(ids) or time.monotonic() > deadline:
                    return docs
                time.sleep(0.3)


def _host_of(doc: dict) -> str:
    return doc.get("node_id") or "-"


def play(demo: Demo) -> bool:
    ok = True
    _step(f"launching {len(LAUNCH)} instances through api.create_instance "
          "(mixed sizes, one with two vifs, one pinned to a host, two with HA)")
    ids = [demo.launch(*spec) for spec in LAUNCH]
    docs = demo.follow(ids, ("running", "terminated"), "placing and booting")
    placed = [i for i in ids if docs[i]["state"] == "running"]
    console.print(f"{len(placed)} of {len(ids)} running; hosts used: "
                  f"{sorted({_host_of(docs[i]) for i in placed})}")
    ok &= len(placed) == len(ids)

    _step(f"launching {len(SURPLUS)} more of 2 cores / 4 GiB: more than the hosts have left")
    big, turned_away = [], []
    for spec in SURPLUS:
        try:
            big.append(demo.launch(*spec))
        except RpcError as exc:  # the API already sees the online hosts full
            if exc.error_type not in CAPACITY_ERRORS:
                raise
            turned_away.append((spec[0], exc))
    docs = demo.follow(big, ("running", "terminated"), "placing the surplus")
    refused = [i for i in big if docs[i]["state"] == "terminated"]
    for i in big:
        doc = docs[i]
        verdict = (f"[green]running on {_host_of(doc)}[/]" if doc["state"] == "running" else
                   f"[red]{doc['state']}[/]: {doc['placement_error']}")
        # A refusal wraps: its host-by-host reasons are the point.
        console.print(f"  {demo.names[i]:8} {verdict}", overflow="ellipsis",
                      no_wrap=doc["state"] == "running")
    for name, exc in turned_away:
        console.print(f"  {name:8} [red]refused by the API[/]: {exc}", overflow="ellipsis",
                      no_wrap=True)
    ok &= bool(refused or turned_away) and all(
        "InsufficientCapacity" in (docs[i]["placement_error"] or "") for i in refused)

    victim = placed[0]
    _step(f"stop {demo.names[victim]} and start it again: it is placed anew")
    before = _host_of(docs[victim])
    demo.api("stop_instance", victim)
    demo.follow([victim], ("stopped",), "stopping")
    demo.api("start_instance", victim)
    docs = demo.follow([victim], ("running", "stopped"), "starting")
    console.print(f"  {demo.names[victim]}: was on {before}; placed again, now "
                  f"{docs[victim]['state']} on {_host_of(docs[victim])}")
    ok &= docs[victim]["state"] == "running"

    gone = [i for i in placed if demo.names[i] in ("web-3", "batch-1", "cache-1")]
    _step(f"terminate {', '.join(demo.names[i] for i in gone)}")
    for i in gone:
        demo.api("terminate_instance", i)
    docs = demo.follow(gone, ("terminated",), "terminating")
    ok &= all(docs[i]["state"] == "terminated" for i in gone)

    _step("create a standalone 1 GiB volume (placed on the storage node)")
    vol = demo.api("create_volume", {"volume_size": 1024, "display_name": "data-1"})
    vol = _wait(lambda: _available(demo, vol["id"]), 30, "the volume")
    console.print(f"  {vol['id']} {vol['state']} on {vol.get('node_id') or '-'}")

    ok &= drain(demo)

    ha = next(i for i in ids if demo.names[i] == "ha-web")
    docs = demo.instances()
    node = _host_of(docs[ha])
    _step(f"kill the agent of {node} (it runs ha-web): its node goes timeout -> offline")
    demo.procs.kill(f"agent-{node}")
    seen: list[str] = []

    def offline() -> bool:
        state = _node_state(demo, node)
        if not seen or seen[-1] != state:
            seen.append(state)
            console.print(f"  {node}: {state}")
        return state == "offline"

    _wait(offline, 40, f"{node} to go offline", every=0.5)
    try:
        moved = _wait(lambda: _moved(demo, ha, node), 40, "ha-web to be re-placed")
    except RuntimeError:
        console.print("  [red]ha-web was not re-placed[/] (is evacuation on node offline "
                      "enabled in the scheduler configuration?)")
        return False
    console.print(f"  ha-web re-placed: {node} -> {_host_of(moved)} ({moved['state']})")
    return ok


def drain(demo: Demo) -> bool:
    """``collector host drain`` as the demo shows it: the host with the fewest running
    instances disabled, each live-migrated (the destination claimed first), then enabled
    again. What found no room elsewhere runs on where it was."""
    docs = demo.instances()
    on: dict[str, list[str]] = {}
    for i, doc in docs.items():
        if doc["state"] == "running":
            on.setdefault(doc["host_node"], []).append(i)
    host, ids = min(on.items(), key=lambda item: len(item[1]))
    _step(f"drain {docs[ids[0]]['node_id']}: disabled, its {len(ids)} running instance(s) "
          "live-migrated (api.migrate_instance)")
    demo.api("set_host_scheduling", host, False)
    refused = {}
    for i in ids:
        try:
            demo.api("migrate_instance", i)
        except RpcError as exc:
            refused[i] = exc
    docs = demo.follow(ids, ("running",), "live-migrating")
    for i in ids:
        note = f"[red]not moved[/]: {refused[i]}" if i in refused else \
            f"{docs[i]['state']} on {_host_of(docs[i])}"
        console.print(f"  {demo.names.get(i, i):8} {note}", overflow="ellipsis", no_wrap=True)
    demo.api("set_host_scheduling", host, True)
    return all(docs[i]["state"] == "running" and (i in refused) == (docs[i]["host_node"] == host)
               for i in ids)


def _available(demo: Demo, vol_id: str) -> dict | None:
    doc = demo.api("show_volume", vol_id)
    return doc if doc["state"] == "available" else None


def _node_state(demo: Demo, node_id: str) -> str:
    for row in demo.client.call(wire.NODE_COLLECTOR, "list"):
        if row["node_id"] == node_id:
            return row["state"]
    return "unknown"


def _moved(demo: Demo, inst: str, old_node: str) -> dict | None:
    doc = demo.api("show_instance", inst)
    return doc if doc["state"] == "running" and _host_of(doc) != old_node else None


def summary(demo: Demo, db_url: str) -> None:
    from collector.db import unit_of_work
    from collector.services.jobs.ledger import list_jobs
    from collector.services.stats import node_overview
    from workers.tables import print_nodes

    docs = demo.instances()
    with unit_of_work(db_url, readonly=True) as session:
        jobs = list_jobs(session, limit=500)
        nodes = node_overview(session)
    outcomes: dict[str, dict[str, int]] = {}
    names = {"success": "ok", "fail": "failed", "cancel": "cancelled"}
    for job in jobs:
        outcome = names.get(job["finish_status"], job["state"])
        per = outcomes.setdefault(job["resource_id"] or "", {})
        per[outcome] = per.get(outcome, 0) + 1
    table = Table(title="instances", title_justify="left")
    for column in ("name", "instance", "host", "IPs", "MAC", "state", "jobs", "to running"):
        table.add_column(column)
    for inst_id, name in demo.names.items():
        doc = docs.get(inst_id)
        if doc is None:
            continue
        ips = ", ".join(v["ipv4_addr"] or "-" for v in doc["vif"])
        macs = ", ".join(v["mac_addr"] for v in doc["vif"])
        jobs_text = ", ".join(f"{v} {k}" for k, v in sorted(outcomes.get(inst_id, {}).items()))
        took = demo.running_after.get(inst_id)
        state = doc["state"] if not doc["placement_error"] else \
            f"{doc['state']} ({doc['placement_error'].split(':')[0]})"
        table.add_row(name, inst_id, _host_of(doc), ips or "-", macs or "-", state,
                      jobs_text or "-", f"{took:.1f}s" if took else "-")
    console.print(table)
    print_nodes(nodes)


def _environment(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, **DEMO_ENV}
    env.setdefault("COLLECTOR_FLOWER_BASIC_AUTH", f"admin:{secrets.token_urlsafe(9)}")
    if SCHEDULER_CONFIG:
        config = data_dir / "placement.toml"
        config.write_text(SCHEDULER_CONFIG)
        env.setdefault("COLLECTOR_SCHEDULER_CONFIG", str(config))
    env["COLLECTOR_DATA_DIR"] = str(data_dir)
    env.setdefault("COLLECTOR_DATABASE_URL", f"sqlite:///{data_dir / 'collector.sqlite3'}")
    env.setdefault("COLLECTOR_SIGNING_SECRET", secrets.token_hex(32))
    return env


def run_demo(exit_at_end: bool = False, data_dir: Path | None = None) -> int:
    from collector.db import unit_of_work
    from collector.db.migrate import upgrade
    from collector.signing import OPERATOR, Credential
    from workers.demo.world.datacenter import seed_datacenter
    from workers.embedded_redis import OPERATOR_USER, EmbeddedRedis, free_port
    from workers.node_credentials import agent_environment

    started = time.monotonic()
    data_dir = Path(data_dir or os.environ.get("COLLECTOR_DEMO_DIR", "var/demo")).resolve()
    shutil.rmtree(data_dir, ignore_errors=True)  # the demo's own directory: a fresh world
    (data_dir / "logs").mkdir(parents=True)
    env = _environment(data_dir)
    redis = None
    if not os.environ.get("COLLECTOR_BROKER_URL"):
        redis = EmbeddedRedis(data_dir).start()
        env["COLLECTOR_BROKER_URL"] = redis.url
        env["COLLECTOR_RESULT_BACKEND"] = redis.result_backend_url
        env["COLLECTOR_OPERATOR_BROKER_URL"] = redis.url_of(0, OPERATOR_USER)
    db_url = env["COLLECTOR_DATABASE_URL"]
    upgrade(db_url)
    with unit_of_work(db_url) as session:
        world = seed_datacenter(session, hosts=HOSTS, prefix=PREFIX)
    _step("seeded a datacenter (collector seed)")
    console.print(f"  {HOSTS} hosts {', '.join(world['host_node_ids'])}; storage "
                  f"{world['storage_node_ids'][0]}; network {world['network']} "
                  f"(NAT {world['nat_network']}); images {world['images']}")

    procs = Processes(data_dir / "logs", env)
    flower_port = free_port()
    try:
        procs.start("worker", "workers.cli", "worker", "--role", "all", "-c", "4")
        procs.start(wire.SCHEDULER, "workers.cli", "worker", "--role", wire.SCHEDULER, "-c", "2")
        procs.start("beat", "workers.cli", "beat")
        procs.start("flower", "workers.cli", "flower", "--port", str(flower_port))
        for node in (*world["host_node_ids"], *world["storage_node_ids"]):
            procs.start(f"agent-{node}", "workers.demo.reference_agents", node,
                        env={**env, **agent_environment(node, env)})
        operator = Credential.from_secret(env["COLLECTOR_SIGNING_SECRET"], OPERATOR)
        with Collector(env.get("COLLECTOR_OPERATOR_BROKER_URL", env["COLLECTOR_BROKER_URL"]),
                       redis.url_of(1, OPERATOR_USER) if redis else
                       env["COLLECTOR_RESULT_BACKEND"], timeout=30,
                       credential=operator) as client:
            demo = Demo(client, world, procs)
            _step("starting a worker per role, a second scheduler, beat, Flower and "
                  f"{len(procs.children) - 4} agents, each with its own signing key and "
                  "broker user (collector credentials issue)")
            nodes = (*world["host_node_ids"], *world["storage_node_ids"])
            with console.status("waiting for every agent's node to come online"):
                _wait(lambda: all(_node_state(demo, n) == "online" for n in nodes), 60,
                      "the agents", every=0.5)
            console.print(f"  all {len(nodes)} nodes online after "
                          f"{time.monotonic() - started:.0f}s; logs in {data_dir / 'logs'}")
            ok = play(demo)
            _step("where everything runs")
            summary(demo, db_url)
        user, password = env["COLLECTOR_FLOWER_BASIC_AUTH"].split(":", 1)
        console.print(f"\nFlower: http://127.0.0.1:{flower_port}/ (user {user}, password "
                      f"{password}); Prometheus metrics at /metrics with the same login")
        verdict = "[green]demo finished[/]" if ok else "[red]demo finished with surprises[/]"
        console.print(f"{verdict} in {time.monotonic() - started:.0f}s")
        if not exit_at_end:
            console.print("everything keeps running; Ctrl-C to stop")
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping")
        return 0 if ok else 1
    except (RuntimeError, RpcError) as exc:
        console.print(f"[red]demo failed:[/] {exc} (logs in {data_dir / 'logs'})")
        return 1
    finally:
        procs.stop()
        if redis:
            redis.stop()
