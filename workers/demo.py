"""``collector demo``: the whole Collector on its embedded defaults, driven by a script.

It starts an embedded Redis (unless COLLECTOR_BROKER_URL is set), migrates the SQLite
database, starts a worker for every role, celery beat and two reference agents
(``hva.demo1``, ``sta.demo1``), seeds a small datacenter, then plays what agents do:
load an instance, report its state, send bad input, terminate it, and watches the
storage agent receive the ``delete_volume`` job the Collector sent after its commit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import redis

from collector import sample_data
from collector.client import Collector, RpcError
from collector.config import Settings, load_settings
from collector.db import unit_of_work

HVA_NODE, STA_NODE = "hva.demo1", "sta.demo1"


def start_agents(procs: Processes) -> None:
    """Start the reference agents when the agent library is installed."""
    if importlib.util.find_spec("workers.reference_agents") is None:
        return
    for node in (HVA_NODE, STA_NODE):
        procs.start(f"agent-{node}", "workers.reference_agents", node)


def seed(settings: Settings) -> dict[str, str]:
    """A host, a storage node, a network and one running instance with two volumes."""
    with unit_of_work(settings.database_url) as session:
        from sqlalchemy import select

        from collector.models import HostNode, StorageNode

        host = session.scalars(select(HostNode).where(HostNode.node_id == HVA_NODE)).first() \
            or sample_data.host_node(session, HVA_NODE, online=False)
        sta = session.scalars(select(StorageNode).where(StorageNode.node_id == STA_NODE)).first() \
            or sample_data.storage_node(session, STA_NODE, online=False)
        inst = sample_data.running_instance(session, host, sta, ipv4=None)
        return {"instance": inst.canonical_uuid, "host": host.canonical_uuid,
                "volumes": [v.canonical_uuid for v in inst.volumes]}


def play(settings: Settings, say: Callable[[str, object], None]) -> bool:
    world = seed(settings)
    say("seeded a datacenter", world)
    inst = world["instance"]
    with Collector(settings.broker_url, settings.result_backend, timeout=30) as client:
        hva = client.rpc("hva-collector")
        t0 = time.perf_counter()
        doc = hva.get_instance(inst)
        say(f"hva.demo1 -> hva-collector.get_instance({inst}) in "
            f"{(time.perf_counter() - t0) * 1000:.1f} ms",
            {k: doc[k] for k in ("uuid", "state", "status", "cpu_cores", "memory_size")}
            | {"host_node": doc["host_node"]["node_id"], "volumes": list(doc["volume"])})

        hva.update_instance(inst, {"state": "halting"})
        hva.update_instance(inst, {"state": "halted"})
        say("update_instance: running -> halting -> halted (committed before the reply)",
            hva.get_instance(inst)["state"])

        for title, call in [
            ("a backwards transition (halted -> initializing) is refused",
             lambda: hva.update_instance(inst, {"state": "initializing"})),
            ("an unknown id is a typed error", lambda: hva.get_instance("i-nothere0")),
            ("a wrong argument type is a typed error", lambda: hva.get_instance(42)),
            ("an unknown field is refused and nothing is written", lambda: hva.update_instance(
                inst, {"force_destroy": True})),
        ]:
            try:
                call()
                say(title, "UNEXPECTED: accepted")
                return False
            except RpcError as exc:
                say(title, f"RpcError {exc}")

        hva.update_instance(inst, {"state": "terminated"})
        hva.finalize_instance(inst)  # agents may repeat it: idempotent
        doc = hva.get_instance(inst)
        say("terminate: instance finalized once, volumes being deleted",
            {"state": doc["state"], "terminated_at": doc["terminated_at"],
             "volumes": {k: v["state"] for k, v in doc["volume"].items()}})

    conn = redis.Redis.from_url(settings.broker_url)
    volumes = set(world["volumes"])
    deadline = time.monotonic() + 30
    ran: dict[str, list] = {}
    while time.monotonic() < deadline:
        ran = {node: [f"{e['name']}({', '.join(map(str, e['args']))}) {e['phase']}"
                      for e in map(json.loads, conn.lrange(f"agent-log:{node}", 0, -1))
                      if volumes & set(map(str, e["args"]))]
               for node in (HVA_NODE, STA_NODE)}
        if all(any("finished" in line for line in lines) for lines in ran.values()):
            break
        time.sleep(0.2)
    say("the agents ran the delete_volume jobs the Collector sent after its commit", ran)
    with unit_of_work(settings.database_url) as session:
        from collector.services.jobqueue import list_jobs

        jobs = [j for j in list_jobs(session, limit=20)
                if j["params"] and volumes & set(map(str, j["params"].get("args", [])))]
    say("the job ledger (collector jobs list)",
        [f"{j['uuid']} {j['queue_name']} {j['job_name']} {j['state']}/{j['finish_status']}"
         for j in jobs])
    return all(j["finish_status"] == "success" for j in jobs) and len(jobs) == 2


def _say(title: str, value: object = None) -> None:
    click.secho(f"\n== {title}", fg="cyan", bold=True)
    if value is not None:
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        lines = text.splitlines()
        click.echo("\n".join(lines[:40]) + (f"\n... ({len(lines) - 40} more lines)"
                                            if len(lines) > 40 else ""))


class Processes:
    """Child processes of the demo, stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the child
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ), start_new_session=True,
        )

    def wait_for(self, name: str, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        path = self.log_dir / f"{name}.log"
        while time.monotonic() < deadline:
            if marker in path.read_text(errors="replace"):
                return
            if self.children[name].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not start; see {path}")

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def run_demo(keep_running: bool = False) -> int:
    from collector.embedded import ensure_broker
    from collector.migrate import upgrade

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    redis = ensure_broker(settings.data_dir)
    settings = load_settings()
    upgrade(settings.database_url)
    _say("database", settings.database_url)

    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = Processes(log_dir)
    try:
        procs.start("worker", "collector.cli", "worker", "--role", "all")
        procs.start("beat", "collector.cli", "beat")
        start_agents(procs)
        procs.wait_for("worker", "ready.")
        _say("collector worker (all roles), beat and reference agents are up",
             f"logs in {log_dir}")
        ok = play(settings, _say)
        if keep_running:
            _say("running; Ctrl-C to stop")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0 if ok else 1
    finally:
        procs.stop()
        if redis:
            redis.stop()
