"""Session fixtures: a real Redis, a real PostgreSQL, migrated databases, real workers.

- ``redis_server``: one redis-server for the session (``.url``, ``.restart()``).
- ``postgres_server``: one PostgreSQL cluster, started only when a test needs it.
- ``db_url``: parametrized "sqlite" / "postgresql", migrated once per database.
- ``session``: a SQLAlchemy session on ``db_url``, rolled back after the test.
- ``broker_url``: ``redis://127.0.0.1:P/<n>``, a distinct Redis DB per ``db_url`` param.
- ``worker``: a ready ``collector worker --role all --concurrency 4`` per ``db_url`` param.
- ``collector_client``: ``workers.agent.client.Collector`` on the worker's broker.

Tiers: a test that needs a server (PostgreSQL, Redis, a worker) is marked ``integration``
here, so ``pytest -m "not integration"`` runs the domain on SQLite alone, with no server.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

import tests.support.servers
from tests.support.servers import PostgresServer, RedisServer, start_worker

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration)]
REDIS_DB = {"sqlite": 1, "postgresql": 2}
SERVER_FIXTURES = {"redis_server", "postgres_server", "broker_url", "worker", "collector_client"}


def pytest_collection_modifyitems(items):
    """Everything under tests/integration, and any test that needs a server, is integration."""
    for item in items:
        needs_server = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if needs_server or "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.integration)


@contextmanager
def _clear_failure(what: str):
    """A server that does not start fails the test with its own message, not a traceback."""
    try:
        yield
    except RuntimeError as error:
        pytest.fail(f"{what} did not start: {error}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _worker_logs_in_pytest_tmp(tmp_path_factory):
    """Worker logs land in pytest's tmp dir (kept for the last 3 runs), not loose in /tmp."""
    tests.support.servers.DEFAULT_LOG_DIR = str(tmp_path_factory.mktemp("worker-logs"))
    yield
    tests.support.servers.DEFAULT_LOG_DIR = None


@pytest.fixture(autouse=True)
def _settings_read_per_test():
    """A worker reads its settings once; a test that changes the environment gets them anew."""
    from tasks.execution import forget_settings

    forget_settings()
    yield
    forget_settings()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    try:
        with _clear_failure("redis-server"):
            server.start()
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()  # start() cleans up after itself when it fails
    with _clear_failure("PostgreSQL"):
        server.start()
    try:
        yield server
    finally:
        server.stop()


def _backend(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request, tmp_path_factory):
    from collector.db.migrate import upgrade

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
def broker_url(db_url, redis_server):
    return f"{redis_server.url}/{REDIS_DB[_backend(db_url)]}"


@pytest.fixture(scope="session")
def worker(db_url, broker_url, tmp_path_factory):
    log_dir = str(tmp_path_factory.mktemp(f"workers-{_backend(db_url)}"))
    with _clear_failure("the Collector worker"):
        process = start_worker(db_url, broker_url, role="all",
                               extra_args=("--concurrency", "4"), log_dir=log_dir)
    yield process
    process.stop()


@pytest.fixture()
def collector_client(worker):
    from workers.agent.client import Collector

    client = Collector(worker.broker_url, timeout=30)
    yield client
    client.close()
