"""A Collector worker killed (SIGKILL) while volumes are being deleted: each volume's
``sta-handle.delete_volume`` job runs once on its storage agent, whatever copies of it
reach the agent.

A world of 20 stopped instances, each with an iSCSI volume on one storage node. Caller
threads terminate them (``api.terminate_instance``: each writes a ``delete_volume`` job for
the node) while two Collector workers serve the calls and the agent's ledger reports
(``jobqueue-proxy.running``, heartbeats, finishes); the database is slowed (every
``queued_jobs`` insert sleeps) so calls are in flight when one worker is killed mid-way
(a quarter of the terminates answered, the agent running its first jobs).
Meanwhile copies of the jobs reach the agent: the Collector sends again jobs not taken
within their take deadline (2 s here, ``maintenance.redeliver_jobs``), and the test
publishes a copy of one job while it waits and of another once it has run (same task id,
same queue). Then, for the agent library (``tests.support.counting_agent``) and for a
plain Celery agent following the documented protocol (``tests.support.plain_agent``):

- every delete_volume job is finished ``success`` in the ledger, one job per volume;
- the agent ran each exactly once (its runs are counted in Redis, ``agent-count:<node>``);
- the injected copies were consumed from the queue, and not run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis
from sqlalchemy import select

from collector import wire
from collector.db import unit_of_work
from collector.ids import new_uuid
from collector.models import QueuedJob
from tests.support.checks import wait_for
from tests.support.servers import (
    RedisServer,
    WorkerProcess,
    node_env,
    slow_inserts,
    start_worker,
)
from workers.agent.client import Collector, RpcError
from workers.demo.world import make

pytestmark = pytest.mark.integration

VOLUMES = 20
CALLERS = 4
CALL_TIMEOUT = 5.0
ENV = {"COLLECTOR_VISIBILITY_TIMEOUT": "8", "COLLECTOR_RPC_TIMEOUT": "5",
       "COLLECTOR_JOB_HEARTBEAT_TIMEOUT": "4", "COLLECTOR_AGENT_JOB_HEARTBEAT": "0.5",
       "COLLECTOR_JOB_TAKE_DEADLINE": "2", "COLLECTOR_EVENT_RETRY_BACKOFF_MAX": "2",
       "PLAIN_AGENT_JOB_SECONDS": "0.5"}
AGENTS = {"library": ["-m", "tests.support.counting_agent"],
          "plain": ["-m", "tests.support.plain_agent"]}


@pytest.fixture(scope="module")
def cluster(postgres_server):
    from collector.db.migrate import upgrade

    db_url = postgres_server.create_database(f"kill_dedupe_{new_uuid()}")
    upgrade(db_url)
    slow_inserts(db_url, 0.1, "queued_jobs")
    with RedisServer() as server:  # its own: nothing else's messages in the Collector's queues
        broker = f"{server.url}/0"
        survivor = start_worker(db_url, broker, extra_args=("--concurrency", "4"), env=ENV)
        yield {"db_url": db_url, "broker": broker, "survivor": survivor,
               "redis": redis.Redis.from_url(broker)}
        survivor.stop()


def _world(db_url: str) -> tuple[str, list[str], list[str]]:
    """A storage node; VOLUMES stopped instances, each with a volume on it."""
    node_id = f"sta.k{new_uuid()}"
    with unit_of_work(db_url) as session:
        storage = make.storage_node(session, node_id)
        img = make.image(session)
        instances, volumes = [], []
        for _ in range(VOLUMES):
            inst = make.instance(session, None, img, state="stopped", status="offline")
            volumes.append(make.volume(session, inst, make.ISCSI, node=storage).canonical_uuid)
            instances.append(inst.canonical_uuid)
    return node_id, instances, volumes


def _jobs(db_url: str, node_id: str) -> list[QueuedJob]:
    with unit_of_work(db_url) as session:
        rows = session.scalars(select(QueuedJob).where(
            QueuedJob.queue_name == wire.node_queue(wire.STA_HANDLE, node_id),
            QueuedJob.job_name == wire.StaJob.DELETE_VOLUME)).all()
        session.expunge_all()
        return rows


class Terminators:
    """Threads terminating the instances; a call with no answer (its worker killed) is
    made again: terminating twice is answered as once."""

    def __init__(self, broker: str, instances: list[str]) -> None:
        self.broker, self.todo = broker, list(instances)
        self.answered: list[str] = []
        self.timeouts = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(CALLERS)]

    def _run(self) -> None:
        with Collector(self.broker, timeout=CALL_TIMEOUT) as client:
            while True:
                with self.lock:
                    if not self.todo:
                        return
                    inst = self.todo.pop()
                for _ in range(6):
                    try:
                        client.call("api", "terminate_instance", inst)
                        with self.lock:
                            self.answered.append(inst)
                        break
                    except RpcError as exc:
                        if exc.error_type == "RpcTimeout":
                            with self.lock:
                                self.timeouts += 1
                        else:
                            self.errors.append(f"{inst}: {exc}")
                            break
                else:
                    self.errors.append(f"{inst}: never answered")

    def __enter__(self) -> Terminators:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self.threads:
            t.join(90)


def _copy(client: Collector, node_id: str, job: QueuedJob) -> None:
    """Publish one more copy of the job's message: same task id, same queue."""
    client.app.send_task(f"{wire.STA_HANDLE}.{job.job_name}", args=[job.resource_id],
                         task_id=job.task_id, queue=wire.node_queue(wire.STA_HANDLE, node_id))


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_each_volume_is_deleted_once_despite_a_killed_worker_and_copies(cluster, kind):
    db_url, broker, conn = cluster["db_url"], cluster["broker"], cluster["redis"]
    node_id, instances, volumes = _world(db_url)
    queue = wire.node_queue(wire.STA_HANDLE, node_id)
    agent = WorkerProcess("", broker, role=f"{kind}-agent", env=node_env(node_id, {
                              **ENV, "COLLECTOR_DATABASE_URL": db_url,
                              "COLLECTOR_BROKER_URL": broker}),
                          argv=[*AGENTS[kind], node_id, *(["sta-handle"] * (kind == "plain"))])
    agent.wait_ready()
    victim = start_worker(db_url, broker, extra_args=("--concurrency", "4"), env=ENV)
    client = Collector(broker, timeout=30)
    stop_maintenance = threading.Event()

    def maintenance() -> None:  # beat's passes, often: copies of jobs not taken in 2 s
        while not stop_maintenance.wait(1.0):
            for task in (wire.Maintenance.REDELIVER_JOBS, wire.Maintenance.REAP_JOBS):
                client.app.send_task(task, queue=wire.MAINTENANCE, ignore_result=True)

    pass_thread = threading.Thread(target=maintenance, daemon=True)
    pass_thread.start()
    try:
        with Terminators(broker, instances) as callers:
            first = wait_for(lambda: _jobs(db_url, node_id), "a first delete_volume job", 30)[0]
            _copy(client, node_id, first)  # a copy while the job waits or runs
            wait_for(lambda: len(callers.answered) >= VOLUMES // 4 and any(
                j.state != "pending" for j in _jobs(db_url, node_id)),
                "terminates answered and a job taken by the agent before the kill", 30)
            assert "succeeded" in victim.log_text(), "the victim served nothing before the kill"
            victim.kill()
            at_kill = (len(callers.answered), conn.llen(f"agent-count:{node_id}"))
        assert not callers.errors, callers.errors
        assert sorted(callers.answered) == sorted(instances)

        def all_finished():
            jobs = _jobs(db_url, node_id)
            return len(jobs) == VOLUMES and all(j.state == "finished" for j in jobs) and jobs

        jobs = wait_for(all_finished, "every delete_volume job finished", 60)
        done = next(j for j in jobs if j.canonical_uuid != first.canonical_uuid)
        _copy(client, node_id, done)  # a copy of a job already run
        unacked = f"unacked.{node_id}" if kind == "library" else "unacked"
        wait_for(lambda: conn.llen(queue) == 0 and not any(
            done.task_id.encode() in m for m in conn.hvals(unacked)),
            "the copy taken and acknowledged", 30)
        time.sleep(1)
        agent_log = agent.log_text()
    finally:
        stop_maintenance.set()
        client.close()
        victim.stop()
        agent.stop()

    assert Counter(j.finish_status for j in jobs) == {"success": VOLUMES}, \
        [(j.canonical_uuid, j.finish_status, j.finish_message) for j in jobs]
    assert sorted(j.resource_id for j in jobs) == sorted(volumes)  # one job per volume
    runs = Counter(x.decode() for x in conn.lrange(f"agent-count:{node_id}", 0, -1))
    twice = {job: n for job, n in runs.items() if n != 1}
    ledger = {j.canonical_uuid: (j.state, j.finish_status, j.delivery_count, j.redeliveries)
              for j in jobs}
    assert not twice, f"run more than once: {twice}; ledger {ledger}"
    assert set(runs) == {j.task_id for j in jobs}, (runs, ledger)
    # The copy of a job already run was taken, refused by the ledger and not run.
    assert f"{done.task_id} (delete_volume): already finished" in agent_log or \
        f"{done.task_id}: not run here: already finished" in agent_log
    dropped = agent_log.count("already finished") + agent_log.count("running on") + \
        agent_log.count("copy dropped")
    assert dropped >= 2  # the two copies published here, at least
    print(f"{kind}: killed at {at_kill[0]} terminates answered ({callers.timeouts} calls timed "
          f"out with it), {at_kill[1]} volumes deleted; "
          f"{sum(j.redeliveries for j in jobs)} copies sent by the Collector, {dropped} "
          f"copies dropped; deliveries {Counter(j.delivery_count for j in jobs)}")
