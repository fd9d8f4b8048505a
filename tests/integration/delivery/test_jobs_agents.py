"""Jobs end to end: the Collector, its ledger, and real agent processes on real Redis."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import redis

import celeryconfig
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import QueuedJob
from tests.support.servers import start_agent, start_worker
from workers.agent.client import Collector, RpcError

pytestmark = pytest.mark.integration
# The Collector workers' hash of delivered, unacknowledged messages.
COLLECTOR_UNACKED = celeryconfig.broker_transport_options["unacked_key"]

FAST = {"COLLECTOR_JOB_HEARTBEAT_TIMEOUT": "3", "COLLECTOR_AGENT_JOB_HEARTBEAT": "0.5",
        "COLLECTOR_NODE_TIMEOUT_SEC": "4"}
REDIS_DB = {"sqlite": 3, "postgresql": 4}


@pytest.fixture(scope="module")
def cluster(db_url, redis_server):
    """A collector worker (short heartbeat timeout) on its own broker database."""
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    broker = f"{redis_server.url}/{REDIS_DB[backend]}"
    worker = start_worker(db_url, broker, extra_args=("--concurrency", "8"), env=FAST)
    client = Collector(broker, timeout=30)
    yield {"worker": worker, "client": client, "broker": broker,
           "redis": redis.Redis.from_url(broker), "db_url": db_url}
    client.close()
    worker.stop()


@pytest.fixture()
def agent(cluster):
    """Starts a reference agent for a node; the test's agents stop when the test ends."""
    started = []

    def start(node_id: str):
        process = start_agent(node_id, cluster["broker"], env={**cluster["worker"].env, **FAST})
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def _log(conn: redis.Redis, node: str) -> list[dict]:
    return [json.loads(x) for x in conn.lrange(f"agent-log:{node}", 0, -1)]


def _job(db_url: str, job_id: str) -> QueuedJob:
    with unit_of_work(db_url) as session:
        return QueuedJob.by_cuuid(session, job_id)


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _agent_answer(cluster, job_id: str, timeout: float = 30) -> tuple[str, object]:
    """The state and value the agent's task stored for job ``job_id`` once its handler has
    returned or raised. A cancel marks the job REVOKED in the result backend until then."""
    backend = cluster["client"].app.backend
    meta = _wait(lambda: (m := backend.get_task_meta(job_id))["status"] in ("SUCCESS", "FAILURE")
                 and m, timeout, what=f"the agent's answer to {job_id}")
    return meta["status"], meta["result"]


def _wait_jobqueue_done_with(cluster, job_id: str) -> None:
    """Wait until no message about ``job_id`` waits in the jobqueue-proxy queue or is being
    handled. A call through that queue answered first means every message queued before it
    was taken (one consumer, FIFO); a taken message stays unacknowledged until its task has
    committed (late acks)."""
    cluster["client"].rpc("jobqueue-proxy").find(job_id)
    conn = cluster["redis"]
    _wait(lambda: not any(job_id.encode() in m for m in
                          [*conn.lrange("jobqueue-proxy", 0, -1), *conn.hvals(COLLECTOR_UNACKED)]),
          what=f"jobqueue-proxy done with {job_id}")


def test_job_reaches_only_its_node_and_the_ledger_follows_it(cluster, agent):
    a, b = f"hva.a{new_uuid()}", f"hva.b{new_uuid()}"
    agent(a), agent(b)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{a}", "reboot", "i-abc12345")
    _wait(lambda: _job(cluster["db_url"], job_id).state == "finished", what="job finished")
    job = _job(cluster["db_url"], job_id)
    assert (job.finish_status, job.worker_id.split(":")[0]) == ("success", a)
    assert job.started_at and job.finished_at and job.delivery_count == 1
    assert [e["phase"] for e in _log(cluster["redis"], a) if e["job_id"] == job_id] == [
        "started", "finished"]
    assert not any(e["job_id"] == job_id for e in _log(cluster["redis"], b))
    found = cluster["client"].rpc("jobqueue-proxy").find(job_id)
    assert found["state"] == "finished" and found["live_state"] == "SUCCESS"


def test_failing_job_is_retried_then_failed_with_its_message(cluster, agent):
    node = f"hva.f{new_uuid()}"
    agent(node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "fail", "disk on fire",
                                           retry_max=2)
    _wait(lambda: _job(cluster["db_url"], job_id).state == "finished", what="job failed")
    job = _job(cluster["db_url"], job_id)
    assert job.finish_status == "fail" and job.retry_count == 2
    assert job.finish_message == {"message": "disk on fire", "error_type": "RuntimeError"}
    phases = [e["phase"] for e in _log(cluster["redis"], node) if e["job_id"] == job_id]
    assert phases == ["started", "failure-hook"] * 2


def test_child_job_joins_its_parents_session(cluster, agent):
    node = f"hva.s{new_uuid()}"
    agent(node)
    parent = cluster["client"].jobs.submit(f"hva-handle.{node}", "spawn",
                                           f"hva-handle.{node}", "reboot", "i-abc12345")
    entries = _wait(lambda: [e for e in _log(cluster["redis"], node)
                             if e["name"] == "reboot" and e["phase"] == "finished"],
                    what="child job")
    assert entries[0]["session_id"] == parent
    with unit_of_work(cluster["db_url"]) as session:
        child = QueuedJob.by_cuuid(session, entries[0]["job_id"])
        assert child.parent_id == QueuedJob.by_cuuid(session, parent).id


def test_twenty_concurrent_poppers_never_share_a_job(cluster):
    queue = f"backup_storage.copy_to.bksta.p{new_uuid()}"
    proxy = cluster["client"].rpc("jobqueue-proxy")
    submitted = {proxy.submit(queue, f"bo-{new_uuid()}", {"n": n}, None)["uuid"]
                 for n in range(40)}
    popped: list[str] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def popper(n: int) -> None:
        try:
            with Collector(cluster["broker"], timeout=30) as client:
                while (job := client.rpc("jobqueue-proxy").pop(queue, f"w{n}", None)):
                    with lock:
                        popped.append(job["uuid"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=popper, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sorted(popped) == sorted(submitted)  # every job once, none twice


def test_cancel_stops_a_pending_job_before_it_ever_starts(cluster, agent):
    node = f"hva.c{new_uuid()}"  # no agent yet: the job waits in the node's queue
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
    assert cluster["client"].rpc("jobqueue-proxy").cancel(job_id)["finish_status"] == "cancel"
    agent(node)
    # Delivered, refused by the ledger, never run: the message is taken and acknowledged,
    # the handler never ran, and no result says the job succeeded (a skipped copy stores
    # none, so no link callback could take it for a success).
    conn = cluster["redis"]
    _wait(lambda: conn.llen(f"hva-handle.{node}") == 0 and conn.hlen(f"unacked.{node}") == 0,
          what="the job's message taken and acknowledged")
    assert _log(conn, node) == []
    assert cluster["client"].app.backend.get_task_meta(job_id)["status"] in ("PENDING",
                                                                             "REVOKED")
    with pytest.raises(RpcError) as info:
        cluster["client"].rpc("jobqueue-proxy").cancel(job_id)
    assert info.value.error_type == "AlreadyTerminated"


def test_cancel_stops_a_running_job_and_its_late_finish_is_ignored(cluster, agent):
    node = f"hva.r{new_uuid()}"
    agent(node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "sleep", 30)
    _wait(lambda: any(e["job_id"] == job_id for e in _log(cluster["redis"], node)),
          what="job started")
    cluster["client"].rpc("jobqueue-proxy").cancel(job_id)
    _wait(lambda: any(e["phase"] == "cancelled" for e in _log(cluster["redis"], node)),
          timeout=15, what="handler saw the cancel")
    # The agent stores its answer after its finish_success call was answered, and after it
    # sent the job's link callback; wait for both late finishes to be handled.
    assert _agent_answer(cluster, job_id) == ("SUCCESS", {"cancelled": True})
    _wait_jobqueue_done_with(cluster, job_id)
    job = _job(cluster["db_url"], job_id)
    assert (job.state, job.finish_status) == ("finished", "cancel")  # late finish ignored


def test_worker_killed_mid_job_is_reaped_and_the_job_completes_exactly_once(cluster, agent):
    node = f"hva.k{new_uuid()}"
    victim = agent(node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "sleep", 2)
    _wait(lambda: any(e["job_id"] == job_id for e in _log(cluster["redis"], node)),
          what="job started")
    victim.kill(signal.SIGKILL)
    agent(node)  # the node's agent comes back
    for _ in range(40):
        cluster["client"].app.send_task("maintenance.reap_jobs", queue="maintenance")
        if _job(cluster["db_url"], job_id).state == "finished":
            break
        time.sleep(0.5)
    job = _wait(lambda: (j := _job(cluster["db_url"], job_id)).state == "finished" and j,
                what="job finished after the reaper")
    assert job.finish_status == "success" and job.delivery_count == 2
    phases = [e["phase"] for e in _log(cluster["redis"], node) if e["job_id"] == job_id]
    assert phases == ["started", "started", "finished"]  # killed once, completed once


@pytest.mark.parametrize("reports", ["protocol", "never"])
def test_plain_celery_agent_jobs_reach_the_ledger(cluster, reports):
    """A plain Celery agent that follows the protocol reports its jobs itself; one that never
    reports has them recorded by the link callbacks."""
    from tests.support.servers import WorkerProcess, node_env

    node = f"hva.plain{new_uuid()}"
    env = node_env(node, {**cluster["worker"].env, **FAST,
                          "PLAIN_AGENT_LEDGER": "1" if reports == "protocol" else "0"})
    agent = WorkerProcess("", cluster["broker"], role=f"plain-{node}", env=env,
                          argv=["-m", "tests.support.plain_agent", node]).wait_ready()
    try:
        ok = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
        bad = cluster["client"].jobs.submit(f"hva-handle.{node}", "poweroff", "i-abc12345")
        for job_id, status in ((ok, "success"), (bad, "fail")):
            job = _wait(lambda j=job_id: (r := _job(cluster["db_url"], j)).state == "finished"
                        and r, what=f"{status} recorded")
            assert job.finish_status == status
    finally:
        agent.stop()


def test_a_poison_job_that_kills_its_worker_fails_after_a_bounded_number_of_deliveries(
        cluster):
    """The agent dies every time the job runs. The reaper (beat's maintenance.reap_jobs)
    sends a job whose worker stopped heartbeating again, until it has been delivered
    COLLECTOR_JOB_MAX_DELIVERIES (3) times; then it fails the job instead."""
    node = f"hva.p{new_uuid()}"
    client = cluster["client"]
    job_id = client.call("jobqueue-proxy", "push_job", f"hva-handle.{node}", "crash", [])
    for _ in range(6):  # bounded; three deliveries are expected
        process = start_agent(node, cluster["broker"], env={**cluster["worker"].env, **FAST})
        try:
            _wait(lambda p=process: p.process.poll() is not None, 30,
                  what="the poison job to kill its agent")
        finally:
            process.stop()
        time.sleep(3.5)  # COLLECTOR_JOB_HEARTBEAT_TIMEOUT (3 s): the dead worker is silent
        client.app.send_task("maintenance.reap_jobs", queue="maintenance").get(timeout=30)
        if _job(cluster["db_url"], job_id).state == "finished":
            break
    job = _job(cluster["db_url"], job_id)
    assert (job.state, job.finish_status, job.delivery_count) == ("finished", "fail", 3)
    assert "no heartbeat" in job.finish_message["message"]
    starts = [e for e in _log(cluster["redis"], node) if e["phase"] == "started"]
    assert len(starts) == 3  # it ran (and killed its worker) exactly three times
