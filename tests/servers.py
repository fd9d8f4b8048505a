"""Real servers for the tests: redis-server and PostgreSQL 15 on free local ports,
plus Collector worker processes. Nothing here is a mock."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from collector.embedded import free_port, redis_server_binary


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="collector-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/test.sh (installs it)")
    return candidates[-1]


class PostgresServer:
    """A throwaway PostgreSQL cluster (as user nobody when we are root: postgres refuses root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="collector-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "nobody", "--"] if self.as_root else []
        result = subprocess.run([*prefix, *cmd], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> PostgresServer:
        if self.as_root:
            os.chmod(self.root, 0o777)
            shutil.chown(self.root, "nobody")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                  "-o", opts, "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class WorkerProcess:
    """A real ``collector worker`` process (or, with ``argv``, any Celery worker program)."""

    def __init__(self, db_url: str, broker_url: str, role: str = "all",
                 extra_args: tuple[str, ...] = (), env: dict | None = None,
                 log_dir: str | None = None, argv: list[str] | None = None) -> None:
        self.db_url, self.broker_url, self.role = db_url, broker_url, role
        self.env = {
            **os.environ, "COLLECTOR_DATABASE_URL": db_url, "COLLECTOR_BROKER_URL": broker_url,
            "COLLECTOR_RESULT_BACKEND": broker_url, "COLLECTOR_OUTBOX_SWEEP_AFTER": "1",
            **(env or {}),
        }
        fd, self.log_path = tempfile.mkstemp(prefix=f"worker-{role}-", suffix=".log",
                                             dir=log_dir)
        os.close(fd)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        argv = argv or ["-m", "collector.cli", "worker", "--role", role, *extra_args]
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log_text():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.role} not ready:\n{self.log_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            if sig == signal.SIGKILL:
                self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


def start_worker(db_url: str, broker_url: str, role: str = "all",
                 extra_args: tuple[str, ...] = (), env: dict | None = None) -> WorkerProcess:
    return WorkerProcess(db_url, broker_url, role, extra_args, env).wait_ready()


def start_agent(node_id: str, broker_url: str, env: dict | None = None,
                concurrency: int = 2) -> WorkerProcess:
    """A reference agent (``workers.reference_agents``) consuming ``node_id``'s queues."""
    return WorkerProcess("", broker_url, role=f"agent-{node_id}", env=env, argv=[
        "-m", "workers.reference_agents", node_id, str(concurrency)]).wait_ready()
