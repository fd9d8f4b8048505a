"""An agent written with plain Celery, no Collector library: ``python -m tests.support.plain_agent NODE``.

It proves that the job ledger follows jobs even on agents that never report: the
Collector's link / link_error callbacks do it.
"""

import os
import sys

from celery import Celery

node_id = sys.argv[1]
broker = os.environ["COLLECTOR_BROKER_URL"]
app = Celery("plain-agent", broker=broker, backend=broker)
app.conf.update(accept_content=["json"], task_serializer="json", result_accept_content=["json"])


@app.task(name="hva-handle.reboot")
def reboot(instance_id: str) -> str:
    return f"rebooted {instance_id}"


@app.task(name="hva-handle.poweroff")
def poweroff(instance_id: str) -> None:
    raise RuntimeError(f"cannot power off {instance_id}")


if __name__ == "__main__":
    app.worker_main(["worker", "-Q", f"hva-handle.{node_id}", "--pool", "solo",
                     "--loglevel", "INFO", "--without-gossip", "--without-mingle"])
