"""A node agent written with plain Celery, no Collector library:
``python -m tests.support.plain_agent NODE [QUEUE ...]``.

A QUEUE is an endpoint (``sta-handle``: the node's queue ``sta-handle.NODE``) or a whole
queue name; none: ``hva-handle``. It follows the protocol of docs/reference.md ("Jobs") for
agents on plain Celery, in ``ledger_job``:

1. at the start of each job, ``jobqueue-proxy.running(job_id, worker_id)`` through Celery
   (``job_id`` is the task id; ``worker_id`` is unique per delivery attempt), its answer
   waited for; asked again with the same ids while no answer comes (a Collector worker
   killed with the call: the ledger answers a repeat as it did the first);
2. ``"run": False`` (finished, cancelled, running elsewhere: a copy): ``Ignore()``, so no
   result is stored and no link callback is sent for this copy;
3. else the job runs, heartbeating ``jobqueue-proxy.heartbeat`` meanwhile, and its outcome
   is reported with ``finish_success`` / ``finish_fail`` (the link callbacks record only
   jobs whose agent never called ``running``).

With ``PLAIN_AGENT_LEDGER=0`` it skips the protocol: an agent that never reports, whose jobs
the ledger learns of only through their link callbacks (or the maintenance pass that makes
up for lost ones), and that runs every copy it receives.

Jobs: ``hva-handle.reboot`` (succeeds), ``hva-handle.poweroff`` (fails),
``sta-handle.delete_volume`` (records each real run: the job id appended to the Redis list
``agent-count:NODE`` on the broker, after ``PLAIN_AGENT_JOB_SECONDS`` (0) of work).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.signals import before_task_publish
from kombu import Exchange

from collector.signing import HEADER as SIGNATURE
from collector.signing import Credential

PROXY = "jobqueue-proxy"
CALL_TIMEOUT = float(os.environ.get("COLLECTOR_RPC_TIMEOUT", "30"))
RUNNING_RETRY_FOR = 60.0  # then the message goes back to the queue, the job not run
FINISH_RETRY_FOR = 300.0  # the job keeps heartbeating meanwhile
HEARTBEAT = float(os.environ.get("COLLECTOR_AGENT_JOB_HEARTBEAT", "10"))
JOB_SECONDS = float(os.environ.get("PLAIN_AGENT_JOB_SECONDS", "0"))
LEDGER = os.environ.get("PLAIN_AGENT_LEDGER", "1") != "0"
# Answers after which the same call may succeed.
RETRYABLE = {"TransientError", "OperationalError"}

broker = os.environ["COLLECTOR_BROKER_URL"]
backend = os.environ.get("COLLECTOR_RESULT_BACKEND") or broker
app = Celery("plain-agent", broker=broker, backend=backend)
app.conf.update(accept_content=["json"], task_serializer="json", result_accept_content=["json"],
                task_acks_late=True, worker_prefetch_multiplier=1,
                worker_enable_remote_control=False)

# The node's identity, as docs/reference.md ("Node identity") tells a plain Celery agent: every
# message it publishes (its calls, and the link callbacks Celery sends for it) signed with
# the node's key, and no queue declared (a node's broker user may not write bindings).
if os.environ.get("COLLECTOR_NODE_KEY"):
    credential = Credential.from_node_key(os.environ["COLLECTOR_NODE_ID"],
                                          os.environ["COLLECTOR_NODE_KEY"])

    @before_task_publish.connect
    def _signed(sender: str, body: Any, headers: dict, declare: list | None = None,
                **_kw: Any) -> None:
        headers[SIGNATURE] = credential.sign(sender, headers["id"], body[0], body[1])
        if declare:  # exchanges only (kombu keeps them in memory)
            declare[:] = [entity for entity in declare if isinstance(entity, Exchange)]


class NoAnswer(Exception):
    pass


def call(method: str, *args: Any, retry_for: float) -> Any:
    """``jobqueue-proxy.<method>(*args)``, asked again while no answer comes."""
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        # The message expires with the call: a copy a killed worker held never runs late.
        result = app.send_task(f"{PROXY}.{method}", args=list(args), queue=PROXY,
                               expires=CALL_TIMEOUT)
        try:
            return result.get(timeout=CALL_TIMEOUT, disable_sync_subtasks=False)
        except (CeleryTimeout, TaskRevokedError) as exc:
            error: Exception = NoAnswer(f"{method}: no answer ({type(exc).__name__})")
        except Exception as exc:  # the Collector's error, rebuilt
            if type(exc).__name__ not in RETRYABLE:
                raise
            error = exc
        finally:
            try:
                result.forget()
            except Exception:  # noqa: BLE001 - the result expires on its own
                pass
        if time.monotonic() + delay > deadline:
            raise error
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _heartbeat(job_id: str, worker_id: str, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT):
        try:
            app.send_task(f"{PROXY}.heartbeat", args=[job_id, worker_id], queue=PROXY,
                          ignore_result=True, expires=HEARTBEAT * 2)
        except Exception:  # noqa: BLE001 - a missed beat; the next one may pass
            pass


def ledger_job(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A bound task's body run under the protocol (module docstring)."""

    def run(task: Task, *args: Any) -> Any:
        job_id = task.request.id
        if not LEDGER:
            return handler(job_id, *args)
        worker_id = f"{task.request.hostname}:{uuid.uuid4().hex}"  # this delivery attempt
        try:
            decision = call("running", job_id, worker_id, retry_for=RUNNING_RETRY_FOR)
        except NoAnswer as exc:
            raise Reject(str(exc), requeue=True) from None
        if not decision["run"]:
            print(f"job {job_id}: not run here: {decision['reason']}", flush=True)
            raise Ignore()
        done = threading.Event()
        threading.Thread(target=_heartbeat, args=(job_id, worker_id, done), daemon=True).start()
        try:
            try:
                result = handler(job_id, *args)
            except Exception as exc:
                _finish("finish_fail", job_id,
                        {"message": str(exc), "error_type": type(exc).__name__})
                raise
            _finish("finish_success", job_id, result)
            return result
        finally:
            done.set()

    run.__doc__ = handler.__doc__
    return run


def _finish(method: str, job_id: str, message: Any) -> None:
    try:
        call(method, job_id, message, retry_for=FINISH_RETRY_FOR)
    except Exception as exc:  # noqa: BLE001 - AlreadyTerminated (a repeat got through), or
        print(f"job {job_id}: {method} not recorded: {exc!r}", flush=True)  # given up


@app.task(name="hva-handle.reboot", bind=True)
@ledger_job
def reboot(job_id: str, instance_id: str) -> str:
    return f"rebooted {instance_id}"


@app.task(name="hva-handle.poweroff", bind=True)
@ledger_job
def poweroff(job_id: str, instance_id: str) -> None:
    raise RuntimeError(f"cannot power off {instance_id}")


@app.task(name="sta-handle.delete_volume", bind=True)
@ledger_job
def delete_volume(job_id: str, volume_id: str) -> dict:
    time.sleep(JOB_SECONDS)
    redis.Redis.from_url(broker).rpush(f"agent-count:{node_id}", job_id)
    return {"deleted": volume_id}


def queues(node: str, names: list[str]) -> list[str]:
    return [name if "." in name else f"{name}.{node}" for name in names or ["hva-handle"]]


node_id = sys.argv[1] if __name__ == "__main__" else os.environ.get("PLAIN_AGENT_NODE", "")

if __name__ == "__main__":
    # A node's broker user reaches only its own unacknowledged-message keys.
    app.conf.broker_transport_options = {
        "unacked_key": f"unacked.{node_id}", "unacked_index_key": f"unacked.{node_id}.index",
        "unacked_mutex_key": f"unacked.{node_id}.mutex"}
    app.worker_main(["worker", "-Q", ",".join(queues(node_id, sys.argv[2:])), "--pool",
                     "threads", "--concurrency", os.environ.get("PLAIN_AGENT_CONCURRENCY", "2"),
                     "--hostname", f"{node_id}@%h", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat"])
