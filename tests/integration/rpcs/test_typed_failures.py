"""Failures of the broker and of the database reach a caller typed, with plain messages.

Real processes: a Redis stopped under a client (BrokerUnavailable), a worker whose database
does not answer (TransientError), volumes attached concurrently under one guest device name
through a real worker (exactly one wins; the others are ValidationFailed, no SQL), and a
worker on a failover list of brokers.
"""

from __future__ import annotations

import threading
import time

import pytest

from collector.db import unit_of_work
from collector.models import Volume
from collector.models.volumes import ISCSI
from tests.support.servers import RedisServer, start_worker
from workers.agent.client import BrokerUnavailable, Collector, RpcError, RpcTimeout
from workers.demo.world import make
from workers.embedded_redis import free_port

pytestmark = pytest.mark.integration

SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WHERE", "VALUES", "parameters", "[SQL")


def _plain(message: str) -> bool:
    return not any(word in message for word in SQL_WORDS)


@pytest.fixture(scope="module")
def redis_of_module():
    with RedisServer() as server:
        yield server


def test_a_broker_out_of_reach_is_broker_unavailable_for_every_kind_of_send():
    with RedisServer() as server:
        url = f"{server.url}/0"
        server.stop()
        with Collector(url, timeout=5) as client:
            for send in (lambda: client.call("hva-collector", "get_instance", "i-abc12345"),
                         lambda: client.cast("node-collector", "notify", "hva.x", "boot"),
                         lambda: client.events.publish("hva/instance_started", ["i-x"], "hva.x"),
                         lambda: client.jobs.submit("hva-handle.hva.x", "reboot", "i-x")):
                with pytest.raises(BrokerUnavailable) as info:
                    send()
                assert info.value.error_type == "BrokerUnavailable"
                assert isinstance(info.value, RpcError)
                assert "cannot be reached" in info.value.message
            server.start()  # the same client works again once the broker is back (its
            # pooled connections to the old server may fail a first call: BrokerUnavailable)
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.call("no-such-endpoint", "ping", timeout=1)
                except RpcTimeout:  # sent and waited for: nobody serves it
                    break
                except BrokerUnavailable:
                    assert time.monotonic() < deadline, "the client did not recover"
                    time.sleep(0.5)
            assert client.cast("no-such-endpoint", "ping")


def test_a_worker_whose_database_does_not_answer_says_transient_error(redis_of_module, tmp_path):
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/collector"
    worker = start_worker(down, f"{redis_of_module.url}/2", role="hva-collector",
                          extra_args=("--concurrency", "1"),
                          env={"PGCONNECT_TIMEOUT": "2"}, log_dir=str(tmp_path))
    try:
        with Collector(worker.broker_url, timeout=30) as client:
            for _ in range(2):  # the worker stays up and answers the same way again
                with pytest.raises(RpcError) as info:
                    client.rpc("hva-collector").get_instance("i-abc12345")
                assert info.value.error_type == "TransientError"
                assert _plain(info.value.message) and "127.0.0.1" not in info.value.message
                assert "retry" in info.value.message
        assert worker.process.poll() is None
        assert "transient database error" in worker.log_text()  # the details stay here
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def racing_worker(db_url, redis_of_module):
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    worker = start_worker(db_url, f"{redis_of_module.url}/{3 if backend == 'sqlite' else 4}",
                          role="sta-collector", extra_args=("--concurrency", "6"))
    yield worker
    worker.stop()


def _race_attaches(client: Collector, inst_id: str, vol_ids: list[str]) -> dict[str, str]:
    """Attach every volume to ``inst_id`` as ``vdb`` at once; each call's outcome."""
    answers: dict[str, str] = {}
    barrier = threading.Barrier(len(vol_ids))

    def attach(vol_id: str) -> None:
        barrier.wait()
        try:
            client.rpc("sta-collector").update_volume(vol_id, {
                "state": "attached", "instance_id": inst_id, "guest_device_name": "vdb"})
            answers[vol_id] = "ok"
        except RpcError as exc:
            answers[vol_id] = exc.error_type
            assert _plain(exc.message), exc.message

    threads = [threading.Thread(target=attach, args=(v,)) for v in vol_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return answers


def test_racing_attaches_under_one_guest_device_leave_exactly_one_attached(racing_worker):
    db_url = racing_worker.db_url
    rounds, racers = 5, 6
    with unit_of_work(db_url) as session:
        host, node = make.host_node(session), make.storage_node(session)
        plans = []
        for _ in range(rounds):
            inst = make.instance(session, host)
            vols = [make.volume(session, None, ISCSI, node=node, state="attaching")
                    for _ in range(racers)]
            session.flush()
            plans.append((inst.canonical_uuid, [v.canonical_uuid for v in vols]))
    client = Collector(racing_worker.broker_url, timeout=60)
    try:
        for inst_id, vol_ids in plans:
            answers = _race_attaches(client, inst_id, vol_ids)
            assert sorted(answers.values()) == sorted(["ok"] + ["ValidationFailed"] * (racers - 1))
            with unit_of_work(db_url) as session:
                states = [Volume.by_cuuid(session, v).state for v in vol_ids]
            assert sorted(states) == ["attached"] + ["attaching"] * (racers - 1)
    finally:
        client.close()
    assert racing_worker.process.poll() is None


def test_a_worker_on_a_failover_list_of_local_brokers_starts_and_serves(redis_of_module,
                                                                         tmp_path):
    first, second = f"{redis_of_module.url}/5", f"{redis_of_module.url}/5"
    worker = start_worker(f"sqlite:///{tmp_path / 'unused.sqlite3'}", f"{first};{second}",
                          role="node-collector", env={"COLLECTOR_RESULT_BACKEND": first})
    try:
        with Collector(first, timeout=20) as client:
            assert client.call("node-collector", "ping")["endpoint"] == "node-collector"
    finally:
        worker.stop()


def test_arguments_that_are_not_json_are_refused_before_sending(redis_of_module):
    with Collector(f"{redis_of_module.url}/6", timeout=5) as client:
        with pytest.raises(RpcError) as info:
            client.call("hva-collector", "get_instance", object())
        assert info.value.error_type == "InvalidArgument"
        assert not isinstance(info.value, BrokerUnavailable)
