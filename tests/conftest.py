"""Session fixtures: a real Redis, a real PostgreSQL, migrated databases, real workers."""

from __future__ import annotations

import pytest

from tests.servers import PostgresServer, RedisServer, start_worker

BACKENDS = ["sqlite", "postgresql"]
REDIS_DB = {"sqlite": 1, "postgresql": 2}


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request, tmp_path_factory):
    from collector.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'collector.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("collector_test")
    upgrade(url)
    return url


@pytest.fixture()
def session(db_url):
    from collector.db import session_factory

    session = session_factory(db_url)()
    session.begin()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture(scope="session")
def broker_url(db_url, redis_server, request):
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    return f"{redis_server.url}/{REDIS_DB[backend]}"


@pytest.fixture(scope="session")
def worker(db_url, broker_url):
    process = start_worker(db_url, broker_url, role="all", extra_args=("--concurrency", "4"))
    yield process
    process.stop()


@pytest.fixture()
def collector_client(worker):
    from collector.client import Collector

    client = Collector(worker.broker_url, timeout=30)
    yield client
    client.close()
