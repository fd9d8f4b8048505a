"""Jobs end to end: the Collector, its ledger, and real agent processes on real Redis."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import redis

from collector.client import Collector, RpcError
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import QueuedJob
from tests.servers import start_agent, start_worker

pytestmark = pytest.mark.integration

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
    agents = []

    def agent(node_id: str):
        process = start_agent(node_id, broker, env={**worker.env, **FAST})
        agents.append(process)
        return process

    yield {"worker": worker, "client": client, "broker": broker, "agent": agent,
           "redis": redis.Redis.from_url(broker), "db_url": db_url}
    for process in agents:
        process.stop()
    client.close()
    worker.stop()


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


def test_job_reaches_only_its_node_and_the_ledger_follows_it(cluster):
    a, b = f"hva.a{new_uuid()}", f"hva.b{new_uuid()}"
    cluster["agent"](a), cluster["agent"](b)
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


def test_failing_job_is_retried_then_failed_with_its_message(cluster):
    node = f"hva.f{new_uuid()}"
    cluster["agent"](node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "fail", "disk on fire",
                                           retry_max=2)
    _wait(lambda: _job(cluster["db_url"], job_id).state == "finished", what="job failed")
    job = _job(cluster["db_url"], job_id)
    assert job.finish_status == "fail" and job.retry_count == 2
    assert job.finish_message == {"message": "disk on fire", "error_type": "RuntimeError"}
    phases = [e["phase"] for e in _log(cluster["redis"], node) if e["job_id"] == job_id]
    assert phases == ["started", "failure-hook"] * 2


def test_child_job_joins_its_parents_session(cluster):
    node = f"hva.s{new_uuid()}"
    cluster["agent"](node)
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


def test_cancel_stops_a_pending_job_before_it_ever_starts(cluster):
    node = f"hva.c{new_uuid()}"  # no agent yet: the job waits in the node's queue
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
    assert cluster["client"].rpc("jobqueue-proxy").cancel(job_id)["finish_status"] == "cancel"
    cluster["agent"](node)
    _wait(lambda: cluster["redis"].llen(f"hva-handle.{node}") == 0, what="queue drained")
    time.sleep(1)
    assert _log(cluster["redis"], node) == []  # delivered, refused by the ledger, never run
    with pytest.raises(RpcError) as info:
        cluster["client"].rpc("jobqueue-proxy").cancel(job_id)
    assert info.value.error_type == "AlreadyTerminated"


def test_cancel_stops_a_running_job_and_its_late_finish_is_ignored(cluster):
    node = f"hva.r{new_uuid()}"
    cluster["agent"](node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "sleep", 30)
    _wait(lambda: any(e["job_id"] == job_id for e in _log(cluster["redis"], node)),
          what="job started")
    cluster["client"].rpc("jobqueue-proxy").cancel(job_id)
    _wait(lambda: any(e["phase"] == "cancelled" for e in _log(cluster["redis"], node)),
          timeout=15, what="handler saw the cancel")
    time.sleep(1)
    job = _job(cluster["db_url"], job_id)
    assert (job.state, job.finish_status) == ("finished", "cancel")  # late finish ignored


def test_worker_killed_mid_job_is_reaped_and_the_job_completes_exactly_once(cluster):
    node = f"hva.k{new_uuid()}"
    victim = cluster["agent"](node)
    job_id = cluster["client"].jobs.submit(f"hva-handle.{node}", "sleep", 2)
    _wait(lambda: any(e["job_id"] == job_id for e in _log(cluster["redis"], node)),
          what="job started")
    victim.kill(signal.SIGKILL)
    cluster["agent"](node)  # the node's agent comes back
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


def test_plain_celery_agent_jobs_are_recorded_by_the_link_callbacks(cluster):
    from tests.servers import WorkerProcess

    node = f"hva.plain{new_uuid()}"
    agent = WorkerProcess("", cluster["broker"], role=f"plain-{node}", env=FAST,
                          argv=["-m", "tests.plain_agent", node]).wait_ready()
    try:
        ok = cluster["client"].jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
        bad = cluster["client"].jobs.submit(f"hva-handle.{node}", "poweroff", "i-abc12345")
        for job_id, status in ((ok, "success"), (bad, "fail")):
            job = _wait(lambda j=job_id: (r := _job(cluster["db_url"], j)).state == "finished"
                        and r, what=f"{status} recorded")
            assert job.finish_status == status
    finally:
        agent.stop()
