"""Only exposed tasks run, each only from its own queue, each refusing wrong arguments typed.

Real worker processes on a Redis of this module's own: a worker of one role knows no other
role's task and none of Celery's built-ins (NotRegistered); a worker of every role refuses a
task that arrives on another task's queue (WrongQueue) without running it; ``ping``,
maintenance and event handler tasks answer InvalidArgument to wrong arguments; the link
callbacks of pushed jobs only confirm what the job's own result says.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.models import OutboxMessage, QueuedJob
from tests.support.servers import RedisServer, start_worker
from workers.agent.client import Collector, RpcError, error_from_exception

pytestmark = pytest.mark.integration

BUILTINS = ["celery.map", "celery.starmap", "celery.chunks", "celery.accumulate",
            "celery.backend_cleanup", "celery.chord_unlock", "celery.group", "celery.chain"]


@pytest.fixture(scope="module")
def redis_of_module():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def workers(db_url, redis_of_module):
    """A worker of every role on broker db 0, one of role hva-collector alone on db 1."""
    every = start_worker(db_url, f"{redis_of_module.url}/0", role="all",
                         extra_args=("--concurrency", "2"))
    hva = start_worker(db_url, f"{redis_of_module.url}/1", role="hva-collector",
                       extra_args=("--concurrency", "2"))
    clients = {"all": Collector(every.broker_url, timeout=20),
               "hva": Collector(hva.broker_url, timeout=20)}
    yield {"all": every, "hva": hva, "clients": clients, "db_url": db_url}
    for client in clients.values():
        client.close()
    every.stop()
    hva.stop()


def _send(client: Collector, name: str, args: list, queue: str, timeout: float = 20) -> str:
    """``name(*args)`` sent to ``queue`` as any Celery client can; the error type answered."""
    result = client.app.send_task(name, args=args, queue=queue)
    try:
        answer = result.get(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the rebuilt remote error
        return error_from_exception(exc).error_type
    finally:
        result.forget()
    raise AssertionError(f"{name} on {queue} ran and answered {answer!r}")


def _outbox_rows(db_url: str) -> int:
    with unit_of_work(db_url) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage))


@pytest.mark.parametrize("name", BUILTINS)
def test_celery_builtins_are_not_registered_in_any_worker(workers, name):
    args = [["maintenance.reap_jobs", [[]]]] if name != "celery.backend_cleanup" else []
    assert _send(workers["clients"]["all"], name, args, "hva-collector") == "NotRegistered"
    assert _send(workers["clients"]["hva"], name, args, "hva-collector") == "NotRegistered"


@pytest.mark.parametrize("name, args", [
    ("maintenance.reap_jobs", []),
    ("maintenance.sweep_outbox", []),
    ("events.deliver", ["hva/instance_terminated", ["i-abc12345"], "hva.forged"]),
    ("events.alarm-collector.on_instance_terminated",
     ["hva/instance_terminated", ["i-abc12345"], "hva.forged"]),
    ("sta-collector.get_volume", ["vol-abc12345"]),
    ("jobqueue-proxy.job_succeeded", ["job-abc12345"]),
])
def test_a_role_worker_knows_no_task_of_another_role(workers, name, args):
    assert _send(workers["clients"]["hva"], name, args, "hva-collector") == "NotRegistered"


def test_a_role_worker_still_serves_its_own_tasks(workers):
    with pytest.raises(RpcError) as info:
        workers["clients"]["hva"].rpc("hva-collector").get_instance("i-nothere0")
    assert info.value.error_type == "UnknownInstanceID"
    assert workers["clients"]["hva"].call("hva-collector", "ping")["endpoint"] == "hva-collector"


@pytest.mark.parametrize("name, args, queue", [
    ("maintenance.reap_jobs", [], "hva-collector"),
    ("maintenance.expire_ip_handles", [], "api"),
    ("events.deliver", ["hva/instance_terminated", ["i-abc12345"], "hva.forged"],
     "hva-collector"),
    ("events.deliver", ["hva/instance_terminated", ["i-abc12345"], "hva.forged"], "api"),
    ("events.alarm-collector.on_instance_terminated",
     ["hva/instance_terminated", ["i-abc12345"], "hva.forged"], "events.event-hook"),
    ("hva-collector.get_instance", ["i-nothere0"], "sta-collector"),
    ("jobqueue-proxy.job_succeeded", ["job-abc12345"], "hva-collector"),
    ("scheduler.schedule_instance", ["i-abc12345"], "api"),
])
def test_a_task_sent_to_another_queue_is_refused_without_running(workers, name, args, queue):
    before = _outbox_rows(workers["db_url"])
    assert _send(workers["clients"]["all"], name, args, queue) == "WrongQueue"
    assert _outbox_rows(workers["db_url"]) == before  # a forged event fanned out nothing
    assert "refused" in workers["all"].log_text()


def test_an_event_published_the_normal_way_still_fans_out(workers):
    # The dispatcher runs from the events exchange whatever the event's routing key.
    before = _outbox_rows(workers["db_url"])
    workers["clients"]["all"].events.publish("hva/instance_terminated", ["i-nothere0"],
                                              sender="hva.demo")
    import time

    deadline = time.monotonic() + 20
    while _outbox_rows(workers["db_url"]) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _outbox_rows(workers["db_url"]) > before


@pytest.mark.parametrize("endpoint", ["hva-collector", "api", "jobqueue-proxy", "scheduler"])
@pytest.mark.parametrize("args", [[1], ["x"], [None], [{"a": 1}]])
def test_ping_with_any_argument_is_invalid_argument(workers, endpoint, args):
    with pytest.raises(RpcError) as info:
        workers["clients"]["all"].call(endpoint, "ping", *args)
    assert info.value.error_type == "InvalidArgument"


@pytest.mark.parametrize("name, queue, args", [
    ("maintenance.reap_jobs", "maintenance", [1]),
    ("maintenance.sweep_node_states", "maintenance", ["now"]),
    ("maintenance.purge_resource_samples", "maintenance", [None, None]),
    ("events.deliver", "events", []),
    ("events.deliver", "events", [1, 2, 3]),
    ("events.deliver", "events", ["e", "not a list", "s"]),
    ("events.alarm-collector.on_instance_terminated", "events.alarm-collector", []),
    ("events.alarm-collector.on_instance_terminated", "events.alarm-collector",
     ["hva/instance_terminated", "i-abc12345", "hva.x"]),
    ("events.event-hook.on_instance_terminated", "events.event-hook",
     ["e", [], "s", "extra"]),
])
def test_internal_tasks_answer_wrong_arguments_with_invalid_argument(workers, name, queue,
                                                                       args):
    assert _send(workers["clients"]["all"], name, args, queue) == "InvalidArgument"


def test_a_client_cannot_mark_a_pending_pushed_job_finished(workers):
    client = workers["clients"]["all"]
    job_id = client.jobs.submit("hva-handle.hva.nobody", "reboot", "i-abc12345")
    for callback in ("job_succeeded", "job_failed"):
        with pytest.raises(RpcError) as info:
            client.call("jobqueue-proxy", callback, job_id)
        assert info.value.error_type == "InvalidStateTransition"
        assert "PENDING" in info.value.message
    with unit_of_work(workers["db_url"]) as session:
        job = QueuedJob.by_cuuid(session, job_id)
        assert (job.state, job.finish_status, job.retry_count) == ("pending", None, 0)


def test_a_link_callback_with_a_wrong_id_is_refused_at_once(workers):
    with pytest.raises(RpcError) as info:
        workers["clients"]["all"].call("jobqueue-proxy", "job_succeeded", "i-abc12345")
    assert info.value.error_type == "InvalidArgument"
