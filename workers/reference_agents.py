"""Reference agents for the demo and the tests: ``python -m workers.reference_agents NODE``.

A node id ``hva.*`` serves ``hva-handle``, ``local-store-handle`` and
``log-alarm-registry``; ``sta.*`` serves ``sta-handle``. Every job is recorded in the Redis
list ``agent-log:<node_id>`` (JSON: job id, name, args, phase ``started``/``finished``), so
tests and the demo can see exactly what ran where. Test jobs: ``sleep(seconds)`` (stops
early when cancelled), ``fail(message)``, ``spawn(queue, job_name, *args)`` (submits a
child job through the Collector).
"""

from __future__ import annotations

import json
import logging
import sys
import time

import redis

from collector.agent import Agent, JobContext
from collector.config import load_settings

REAL_JOBS = {
    "hva-handle": ("run_local_store", "run_vol_store", "terminate", "cleanup", "stop", "attach",
                   "detach", "reboot", "poweroff", "soft_poweroff", "poweron",
                   "wait_volumes_available"),
    "local-store-handle": ("run_local_store", "deploy_volume_and_attach", "delete_volume",
                           "backup_volume", "backup_image"),
    "sta-handle": ("create_volume", "create_volume_and_run_instance", "delete_volume",
                   "backup_volume", "backup_image", "create_snapshot", "delete_snapshot"),
    "log-alarm-registry": ("update_alarm", "delete_alarm", "delete_alarms"),
    "resource-alarm-registry": ("update_alarms", "delete_alarms"),
}


def build_agent(node_id: str) -> Agent:
    settings = load_settings()
    endpoints = (("sta-handle",) if node_id.startswith("sta.") else
                 ("hva-handle", "local-store-handle", "log-alarm-registry",
                  "resource-alarm-registry"))
    agent = Agent(node_id, settings.broker_url, settings.result_backend, endpoints=endpoints,
                  heartbeat_interval=float(load_settings().node_timeout_sec) / 2)
    log_conn = redis.Redis.from_url(settings.broker_url)

    def record(ctx: JobContext, phase: str, **extra: object) -> None:
        log_conn.rpush(f"agent-log:{node_id}", json.dumps(
            {"job_id": ctx.job_id, "name": ctx.name, "args": list(ctx.args), "phase": phase,
             "session_id": ctx.session_id, "worker_id": ctx.worker_id, **extra}))

    def make_handler(name: str):
        def handler(ctx: JobContext, *args: object) -> dict:
            record(ctx, "started")
            record(ctx, "finished")
            return {"node": node_id, "job": name}
        return handler

    for endpoint in endpoints:
        for name in REAL_JOBS[endpoint]:
            agent.job(endpoint, name)(make_handler(name))

    first = endpoints[0]

    @agent.job(first, "sleep")
    def sleep(ctx: JobContext, seconds: float) -> dict:
        record(ctx, "started")
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            if ctx.cancelled:
                record(ctx, "cancelled")
                return {"cancelled": True}
            time.sleep(0.05)
        record(ctx, "finished")
        return {"slept": seconds}

    def note_failure(ctx: JobContext, exc: BaseException) -> None:
        record(ctx, "failure-hook", error=str(exc))

    @agent.job(first, "fail", on_failure=note_failure)
    def fail(ctx: JobContext, message: str) -> None:
        record(ctx, "started")
        raise RuntimeError(message)

    @agent.job(first, "spawn")
    def spawn(ctx: JobContext, queue: str, job_name: str, *args: object) -> dict:
        record(ctx, "started")
        child = agent.collector.jobs.submit(queue, job_name, *args)
        record(ctx, "finished", child=child)
        return {"child": child}

    return agent


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    node_id = sys.argv[1]
    sys.exit(build_agent(node_id).run(concurrency=int(sys.argv[2]) if len(sys.argv) > 2 else 2))


if __name__ == "__main__":
    main()
