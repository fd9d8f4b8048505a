"""``collector up``: run a Procfile's processes and restart any that dies.

honcho runs a Procfile but stops everything when one process exits; a Collector
installation should instead bring the dead process back (a worker killed by the kernel,
a crash) and keep the others serving. Each process's output is prefixed with its name;
its pid is kept in ``<data dir>/run/<name>.pid`` for operators and tests. A process that
dies soon after its start is restarted with a growing delay (up to 30 s), so a broken
one does not spin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

QUICK_DEATH = 10.0  # seconds: a process dying sooner counts as failing to start
MAX_DELAY = 30.0


@dataclass
class Child:
    name: str
    command: str
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    delay: float = 1.0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, entries: dict[str, str], env: dict[str, str], run_dir: Path,
                 echo: Callable[[str], None] = print) -> None:
        self.children = [Child(name, command) for name, command in entries.items()]
        self.env, self.run_dir, self.echo = env, run_dir, echo
        self.stopping = False
        self.width = max((len(c.name) for c in self.children), default=4)
        self._lock = threading.Lock()

    def _say(self, name: str, text: str) -> None:
        with self._lock:
            self.echo(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}")

    def _pump(self, child: Child, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            self._say(child.name, line.rstrip())

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.command, shell=True, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True)
        child.started_at, child.restart_at = time.monotonic(), None
        (self.run_dir / f"{child.name}.pid").write_text(f"{child.process.pid}\n")
        threading.Thread(target=self._pump, args=(child, child.process.stdout),
                         daemon=True).start()
        self._say("up", f"started {child.name} (pid {child.process.pid})")

    def _check(self, child: Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._start(child)
            return
        code = child.process.poll() if child.process else None
        if code is None:
            return
        quick = now - child.started_at < QUICK_DEATH
        child.delay = min(MAX_DELAY, child.delay * 2) if quick else 1.0
        child.restart_at = now + child.delay
        self._say("up", f"{child.name} exited with status {code}; restarting in "
                        f"{child.delay:.0f} s")

    def _stop_all(self) -> None:
        """SIGTERM to every process group, then wait for the groups (not only the shells
        that started them) to be gone; SIGKILL what is left after 20 s."""
        started = [c.process for c in self.children if c.process is not None]
        for process in started:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in started:
            while _group_alive(process) and time.monotonic() < deadline:
                process.poll()  # reap the shell so only the group's members count
                time.sleep(0.1)
            if _group_alive(process):
                _signal(process, signal.SIGKILL)
            process.wait()

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        """Start everything, keep it running until SIGINT/SIGTERM, then stop everything."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                now = time.monotonic()
                for child in self.children:
                    self._check(child, now)
                time.sleep(0.2)
            self._say("up", "stopping")
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(process: subprocess.Popen) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def echo_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
