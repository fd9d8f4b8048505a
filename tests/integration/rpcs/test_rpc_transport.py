"""The RPC transport: typed errors, timeouts, JSON only, the CLI and plain Celery clients."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from kombu import Connection

import celeryconfig
from tests.support.rpc import signed_celery
from workers.agent.client import Collector, RpcError, RpcTimeout

pytestmark = pytest.mark.integration
# The Collector workers' hash of delivered, unacknowledged messages.
COLLECTOR_UNACKED = celeryconfig.broker_transport_options["unacked_key"]


def test_unknown_id_reaches_the_caller_as_a_typed_error(collector_client):
    with pytest.raises(RpcError) as info:
        collector_client.rpc("hva-collector").get_instance("i-nothere0")
    assert info.value.error_type == "UnknownInstanceID"
    assert "i-nothere0" in info.value.message
    assert str(info.value).startswith("UnknownInstanceID: ")


@pytest.mark.parametrize(
    "args",
    [
        (42,),  # wrong type
        (),  # missing argument
        ("i-abc12345", "extra"),  # extra argument
        ("vol-abc12345",),  # wrong prefix
        ("not an id",),  # malformed id
    ],
)
def test_bad_arguments_reach_the_caller_as_invalid_argument(collector_client, args):
    with pytest.raises(RpcError) as info:
        collector_client.call("hva-collector", "get_instance", *args)
    assert info.value.error_type == "InvalidArgument"


def test_methods_that_are_not_exposed_cannot_be_called(collector_client):
    # Only exposed domain functions are tasks: a helper's name is refused, never run.
    with pytest.raises(RpcError) as info:
        collector_client.call("hva-collector", "load_instance", "i-abc12345", timeout=10)
    assert info.value.error_type == "NotRegistered"


def test_a_call_nobody_serves_times_out(worker):
    with Collector(worker.broker_url) as client, pytest.raises(RpcTimeout) as info:
        client.call("no-such-endpoint", "get_instance", "i-abc12345", timeout=1)
    assert info.value.error_type == "RpcTimeout"


def test_plain_celery_client_sees_the_error_type(worker):

    app = signed_celery(worker.broker_url, worker.broker_url, accept_content=["json"],
                        result_accept_content=["json"])
    result = app.send_task("hva-collector.get_instance", ["i-nothere0"], queue="hva-collector")
    with pytest.raises(Exception) as info:
        result.get(timeout=20)
    assert type(info.value).__name__ == "UnknownInstanceID"
    app.close()


def test_pickle_message_is_refused_and_never_runs(worker, collector_client):
    """A pickle-serialized task is rejected by the worker (JSON only): it never runs, never
    answers, and is dropped rather than left to be retried."""

    # Signed (every Collector task refuses an unsigned message first): what is refused here
    # is the pickle content itself.
    app = signed_celery(worker.broker_url, worker.broker_url, task_serializer="pickle",
                        accept_content=["json", "pickle"],
                        result_accept_content=["json", "pickle"])
    result = app.send_task("hva-collector.get_instance", ["i-nothere0"], queue="hva-collector",
                           serializer="pickle")
    # The worker is this queue's only consumer and takes messages in order, deciding about
    # the content type as it takes one: once a JSON call sent after the pickle message is
    # answered, the pickle message has been taken and refused or accepted.
    assert isinstance(collector_client.rpc("hva-collector").get_host_nodes_index(), list)
    with Connection(worker.broker_url) as conn:
        redis_client = conn.default_channel.client
        # Neither waiting in the queue nor taken and unacknowledged (which a running task or
        # a message left for redelivery would be): the refused message is dropped.
        held = [*redis_client.lrange("hva-collector", 0, -1), *redis_client.hvals(COLLECTOR_UNACKED)]
        assert not [m for m in held if result.id.encode() in m]
    # Not run: a run would have stored its answer (UnknownInstanceID) before its ack.
    assert app.backend.get_task_meta(result.id)["status"] == "PENDING"
    app.close()


def test_cli_call_prints_the_typed_error(worker):
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "call", "hva-collector", "get_instance",
         "i-nothere0", "--timeout", "20"],
        env=worker.env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    error = json.loads(out.stderr.strip().splitlines()[-1])
    assert error["error_type"] == "UnknownInstanceID"


def test_agent_job_submission_reaches_only_that_node_queue(collector_client, worker):
    from collector.ids import new_uuid

    conn = Connection(worker.broker_url).default_channel.client
    node = f"hva.j{new_uuid()}"
    job_id = collector_client.jobs.submit(f"hva-handle.{node}", "reboot", "i-abc12345")
    assert job_id.startswith("job-")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not conn.llen(f"hva-handle.{node}"):
        time.sleep(0.1)
    message = json.loads(conn.lrange(f"hva-handle.{node}", 0, -1)[0])
    assert message["headers"]["id"] == job_id
    assert message["headers"]["task"] == "hva-handle.reboot"
    assert conn.llen(f"hva-handle.hva.other{new_uuid()}") == 0
    with pytest.raises(RpcError) as info:
        collector_client.jobs.submit("no-node-part", "reboot")
    assert info.value.error_type == "InvalidArgument"


def test_health_pings_every_endpoint_through_its_queue(worker):
    out = subprocess.run([sys.executable, "-m", "workers.cli", "health", "--timeout", "20"],
                         env=worker.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    from collector.wire import RPC_ENDPOINTS

    assert out.stdout.count("ok ") == len(RPC_ENDPOINTS)


def test_cli_call_prints_the_json_answer(worker):
    from collector.db import unit_of_work
    from workers.demo.world import make

    with unit_of_work(worker.db_url) as session:
        inst_id = make.instance(session, make.host_node(session)).canonical_uuid
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "call", "hva-collector", "get_instance", inst_id],
        env=worker.env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["uuid"] == inst_id


def test_flower_refuses_requests_without_credentials(worker, tmp_path):
    import urllib.error
    import urllib.request

    from workers.embedded_redis import free_port

    port = free_port()
    env = {**worker.env, "COLLECTOR_FLOWER_BASIC_AUTH": "ops:s3cret",
           "COLLECTOR_DATA_DIR": str(tmp_path)}
    flower = subprocess.Popen([sys.executable, "-m", "workers.cli", "flower", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                time.sleep(0.3)
                continue
            break
        assert status == 401
        request = urllib.request.Request(url)
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(b"ops:s3cret").decode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        flower.terminate()
        flower.wait(10)
