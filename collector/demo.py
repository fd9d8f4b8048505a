"""``collector demo``: the whole Collector on its embedded defaults, driven by a script.

It starts an embedded Redis (unless COLLECTOR_BROKER_URL is set), migrates the SQLite
database, starts a worker for every role, celery beat and two reference agents
(``hva.demo1``, ``sta.demo1``), seeds a small datacenter, then plays what agents do:
load an instance, report its state, send bad input, terminate it, and watches the
storage agent receive the ``delete_volume`` job the Collector sent after its commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from collector.config import load_settings


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
    from collector.cli import _ensure_broker
    from collector.migrate import upgrade

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    redis = _ensure_broker(settings.data_dir)
    settings = load_settings()
    upgrade(settings.database_url)
    _say("database", settings.database_url)

    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = Processes(log_dir)
    try:
        procs.start("worker", "collector.cli", "worker", "--role", "all")
        procs.start("beat", "collector.cli", "beat")
        from workers import demo_script

        demo_script.start_agents(procs)
        procs.wait_for("worker", "ready.")
        _say("collector worker (all roles), beat and reference agents are up",
             f"logs in {log_dir}")
        ok = demo_script.play(settings, _say)
        if keep_running:
            _say("running; Ctrl-C to stop")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0 if ok else 1
    finally:
        procs.stop()
        if redis:
            redis.stop()
