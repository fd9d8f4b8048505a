"""A storage agent built on the agent library (``workers.agent.base.Agent``) that counts its
real runs: ``python -m tests.support.counting_agent NODE [CONCURRENCY]``.

It consumes ``sta-handle.NODE``; ``delete_volume(volume_id)`` appends the job id to the
Redis list ``agent-count:NODE`` on the broker (after ``PLAIN_AGENT_JOB_SECONDS`` (0) of work),
or, with ``COUNT_DIR`` set, a line to the file ``COUNT_DIR/NODE.runs`` (written through
before the job reports: what a broker failover cannot take back), so a test can tell how
many times each job really ran. The library takes each job through
the ledger (``jobqueue-proxy.running``) and drops a copy it must not run.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from collector import wire
from workers.agent.base import Agent, JobContext
from workers.agent.client import redis_client


def build_agent(node_id: str) -> Agent:
    broker = os.environ["COLLECTOR_BROKER_URL"]
    agent = Agent(node_id, broker, endpoints=(wire.STA_HANDLE,))
    seconds = float(os.environ.get("PLAIN_AGENT_JOB_SECONDS", "0"))
    count_dir = os.environ.get("COUNT_DIR")
    counts = None if count_dir else redis_client(broker)

    def count(job_id: str) -> None:
        if counts is not None:
            counts.rpush(f"agent-count:{node_id}", job_id)
            return
        fd = os.open(os.path.join(count_dir, f"{node_id}.runs"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{job_id}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @agent.job(wire.STA_HANDLE, wire.StaJob.DELETE_VOLUME)
    def delete_volume(ctx: JobContext, volume_id: str) -> dict:
        time.sleep(seconds)
        count(ctx.job_id)
        return {"deleted": volume_id}

    return agent


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    node_id = sys.argv[1]
    sys.exit(build_agent(node_id).run(concurrency=int(sys.argv[2]) if len(sys.argv) > 2 else 2))


if __name__ == "__main__":
    main()
