"""Reference agents for the demo and the tests: ``python -m workers.demo.reference_agents NODE``.

A node id ``hva.*`` serves ``hva-handle``, ``local-store-handle``, ``migration-handle`` and
``log-alarm-registry``; ``sta.*`` serves ``sta-handle``. Every job is recorded in the Redis
list ``agent-log:<node_id>`` (JSON: job id, name, args, phase ``started``/``finished``), so
tests and the demo can see exactly what ran where. Test jobs: ``sleep(seconds)`` (stops
early when cancelled), ``fail(message)``, ``crash()`` (kills its worker: a poison job), ``spawn(queue, job_name, *args)`` (submits a
child job through the Collector).

The instance and volume lifecycle jobs do what a real agent reports, without touching a
hypervisor or a disk (``lifecycle_jobs``):

- ``run_local_store(inst)`` / ``run_vol_store(inst, vol)``: boot; the instance goes
  ``pending -> initializing -> running`` and ``hva/instance_started`` is published;
- ``create_volume(vol)``: the volume goes ``pending -> creating -> available``;
- ``create_volume_and_run_instance(vol, inst)``: the same, then ``wait_volumes_available``
  on the instance's host, which boots the instance once all its volumes are on disk;
- ``stop(inst)``: ``stopping -> stopped``, off its host; ``terminate(inst)``:
  ``shuttingdown -> terminated`` (the Collector finalizes it); both publish
  ``hva/instance_terminated`` as the original hva does;
- ``cleanup(inst)``: the node drops its copy of an instance that was placed elsewhere;
- ``run_migration(inst, generation)`` (on the destination): the copy boots here, then
  ``hva-collector.switch_instance_host_node`` with that generation moves the instance here
  (the source then gets ``cleanup``); a migration already over (StalePlacement) drops it;
- ``delete_volume(...)``: the volume is reported ``deleted``.

Fencing, as the protocol asks of every agent: a job reads the instance document first and
reports with its ``placement_generation``; a boot runs only for an instance placed on this
node; a ``StalePlacement`` refusal means the instance was placed again elsewhere, and the
node drops its copy. The instances whose copy runs on a node are the Redis set
``agent-copies:<node_id>``, so tests and the demo can see that no instance runs twice.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable

import redis

from collector import wire
from collector.config import load_settings
from workers.agent.base import Agent, JobContext
from workers.agent.client import RpcError, redis_client


def build_agent(node_id: str) -> Agent:
    settings = load_settings()
    endpoints = ((wire.STA_HANDLE,) if node_id.startswith("sta.") else
                 (wire.HVA_HANDLE, wire.LOCAL_STORE_HANDLE, wire.LOG_ALARM_REGISTRY,
                  wire.RESOURCE_ALARM_REGISTRY, wire.MIGRATION_HANDLE))
    agent = Agent(node_id, settings.broker_url, settings.result_backend, endpoints=endpoints,
                  heartbeat_interval=float(load_settings().node_timeout_sec) / 2)
    log_conn = redis_client(settings.broker_url, settings)  # Sentinel and TLS too

    def record(ctx: JobContext, phase: str, **extra: object) -> None:
        log_conn.rpush(f"agent-log:{node_id}", json.dumps(
            {"job_id": ctx.job_id, "name": ctx.name, "args": list(ctx.args), "phase": phase,
             "session_id": ctx.session_id, "worker_id": ctx.worker_id, **extra}))

    def make_handler(name: str, work: Callable[..., dict | None] | None = None):
        def handler(ctx: JobContext, *args: object) -> dict:
            record(ctx, "started")
            result = work(*args) if work else None
            record(ctx, "finished", result=result)
            return {"node": node_id, "job": name, **(result or {})}
        return handler

    lifecycle = lifecycle_jobs(agent, log_conn)
    for endpoint in endpoints:
        for name in wire.job_names(endpoint):
            agent.job(endpoint, name)(make_handler(name, lifecycle.get(name)))

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

    @agent.job(first, "crash")
    def crash(ctx: JobContext) -> None:
        """A poison job: it kills its worker every time it runs."""
        record(ctx, "started")
        os._exit(70)

    @agent.job(first, "spawn")
    def spawn(ctx: JobContext, queue: str, job_name: str, *args: object) -> dict:
        record(ctx, "started")
        child = agent.collector.jobs.submit(queue, job_name, *args)
        record(ctx, "finished", child=child)
        return {"child": child}

    return agent


def lifecycle_jobs(agent: Agent, store: redis.Redis) -> dict[str, Callable[..., dict | None]]:
    """What the lifecycle jobs report to the Collector, by job name (see the module doc)."""
    hva = agent.collector.rpc(wire.HVA_COLLECTOR)
    sta = agent.collector.rpc(wire.STA_COLLECTOR)
    copies = f"agent-copies:{agent.node_id}"

    def fenced(work: Callable[..., dict]) -> Callable[..., dict]:
        """A job on an instance: a StalePlacement refusal drops this node's copy of it."""
        def run(inst_id: str, *args: str) -> dict:
            try:
                return work(inst_id, *args)
            except RpcError as exc:
                if exc.error_type != "StalePlacement":
                    raise
                store.srem(copies, inst_id)
                return {"stale": inst_id, "dropped": True}
        return run

    def reporter(inst_id: str) -> tuple[dict, Callable[..., None]]:
        """The instance document, and a report function that carries its generation."""
        doc = hva.get_instance(inst_id)
        generation = doc["placement_generation"]

        def report(**data: object) -> None:
            hva.update_instance(inst_id, {**data, "generation": generation})

        return doc, report

    def walk_volume(vol_id: str, *states: str) -> None:
        for state in states:
            sta.update_volume(vol_id, {"state": state})

    @fenced
    def boot(inst_id: str, *_volume: str) -> dict:
        doc, report = reporter(inst_id)
        if doc["state"] not in ("pending", "initializing"):
            return {"skipped": doc["state"]}  # a repeated or late boot job
        if (doc["host_node"] or {}).get("node_id") != agent.node_id:
            return {"skipped": "placed on another node"}
        if doc["state"] == "pending":  # else a retry of this boot, after its first report
            report(state="initializing")
        for vol_id, vol in doc["volume"].items():  # local disks are made here
            state = vol["state"] if vol["deleted_at"] is None else "deleted"
            if state == "pending" and vol["is_local_volume"]:
                walk_volume(vol_id, "creating", "available")
                state = "available"
            if state == "available":  # on disk: attach it
                walk_volume(vol_id, "attaching", "attached")
        report(state="running", status="online")
        store.sadd(copies, inst_id)
        agent.publish(wire.HvaEvent.INSTANCE_STARTED, [inst_id])
        return {"booted": inst_id}

    def create_volume(vol_id: str) -> dict:
        state = sta.get_volume(vol_id)["state"]
        if state in ("pending", "creating"):
            walk_volume(vol_id, *(("creating", "available") if state == "pending"
                                  else ("available",)))
        return {"volume": vol_id}

    def create_volume_and_run_instance(vol_id: str, inst_id: str) -> dict:
        create_volume(vol_id)
        host = hva.get_instance(inst_id)["host_node"]["node_id"]
        job = agent.collector.jobs.submit(wire.node_queue(wire.HVA_HANDLE, host),
                                          wire.HvaJob.WAIT_VOLUMES_AVAILABLE, inst_id,
                                          resource_id=inst_id)
        return {"volume": vol_id, "boot_job": job}

    def wait_volumes_available(inst_id: str) -> dict:
        doc = hva.get_instance(inst_id)
        waiting = [v for v, vol in doc["volume"].items()
                   if vol["deleted_at"] is None and not vol["is_local_volume"]
                   and vol["state"] not in ("available", "attached")]
        return {"waiting_for": waiting} if waiting else boot(inst_id)

    @fenced
    def stop(inst_id: str) -> dict:
        _doc, report = reporter(inst_id)
        report(state="stopping")
        report(state="stopped", status="offline", host_node_id=None)
        store.srem(copies, inst_id)
        agent.publish(wire.HvaEvent.INSTANCE_TERMINATED, [inst_id])
        return {"stopped": inst_id}

    @fenced
    def terminate(inst_id: str) -> dict:
        doc, report = reporter(inst_id)
        if doc["state"] != "terminated":
            report(state="shuttingdown")
            report(state="terminated")  # the Collector finalizes
        store.srem(copies, inst_id)
        agent.publish(wire.HvaEvent.INSTANCE_TERMINATED, [inst_id])
        return {"terminated": inst_id}

    @fenced
    def run_migration(inst_id: str, generation: int) -> dict:
        doc = hva.get_instance(inst_id)
        if doc["state"] != "migrating" or doc["placement_generation"] != generation:
            return {"skipped": doc["state"]}  # over already: the Collector frees the claim
        store.sadd(copies, inst_id)  # the copy runs here before the switch is reported
        hva.switch_instance_host_node(inst_id, agent.node_id, generation)
        return {"migrated": inst_id}

    def cleanup(inst_id: str) -> dict:
        store.srem(copies, inst_id)  # the copy's disk and processes would go here
        return {"cleaned": inst_id}

    def delete_volume(*args: str) -> dict:
        vol_id = args[-1]  # (vol) on sta-handle, (inst, vol) on local-store-handle
        sta.update_volume(vol_id, {"state": "deleted"})
        return {"deleted": vol_id}

    return {wire.LocalStoreJob.RUN_LOCAL_STORE: boot, wire.HvaJob.RUN_VOL_STORE: boot,
            wire.StaJob.CREATE_VOLUME: create_volume,
            wire.StaJob.CREATE_VOLUME_AND_RUN_INSTANCE: create_volume_and_run_instance,
            wire.HvaJob.WAIT_VOLUMES_AVAILABLE: wait_volumes_available, wire.HvaJob.STOP: stop,
            wire.HvaJob.TERMINATE: terminate, wire.HvaJob.CLEANUP: cleanup,
            wire.MigrationJob.RUN_MIGRATION: run_migration,
            wire.StaJob.DELETE_VOLUME: delete_volume}


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    node_id = sys.argv[1]
    sys.exit(build_agent(node_id).run(concurrency=int(sys.argv[2]) if len(sys.argv) > 2 else 2))


if __name__ == "__main__":
    main()
