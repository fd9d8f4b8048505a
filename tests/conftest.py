"""Session fixtures: a real Redis, a real PostgreSQL, migrated databases, real workers.

- ``redis_server``: one redis-server for the session (``.url``, ``.restart()``).
- ``postgres_server``: one PostgreSQL cluster, started only when a test needs it.
- ``db_url``: parametrized "sqlite" / "postgresql", migrated once per database (SQLite: a
  copy of ``migrated_sqlite_template``).
- ``session``: a SQLAlchemy session on ``db_url``, rolled back after the test.
- ``broker_url``: ``redis://127.0.0.1:P/<n>``, a distinct Redis DB per ``db_url`` param.
- ``worker``: a ready ``collector worker --role all --concurrency 4`` per ``db_url`` param.
- ``collector_client``: ``workers.agent.client.Collector`` on the worker's broker.
- ``migrated_sqlite_template``: one SQLite file migrated by ``upgrade`` once per session;
  ``migrated_sqlite(name)``: a test's own copy of it, as a URL (``tests/support/fast_db.py``).

Tiers: a test that needs a server (PostgreSQL, Redis, a worker) is marked ``integration``
here, so ``pytest -m "not integration"`` runs the domain on SQLite alone, with no server;
that run does not even import the modules under tests/integration (every test there is
deselected anyway).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sys

# Every message is signed (collector.signing): this run's secret, before anything reads the
# settings. Workers and agents started by the tests inherit it; the tests' own clients sign
# as the operator, agents started with node credentials as their node.
os.environ.setdefault("COLLECTOR_SIGNING_SECRET", secrets.token_hex(32))
from contextlib import contextmanager
from pathlib import Path

import pytest

import tests.support.servers
from tests.support import fast_db
from tests.support.servers import PostgresServer, RedisServer, start_worker

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration)]
REDIS_DB = {"sqlite": 1, "postgresql": 2}
SERVER_FIXTURES = {"redis_server", "postgres_server", "broker_url", "worker", "collector_client"}
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def _marked_with(marks: dict[str, bool]):
    """A ``-m`` matcher for a test carrying exactly the marks set in ``marks``."""
    return lambda name, /, **_kwargs: marks.get(name, False)


def _deselects_every_integration_test(markexpr: str) -> bool:
    """Whether ``-m markexpr`` is false for any test marked ``integration``, whatever its other
    marks (every combination of the other names in the expression is tried)."""
    if not markexpr.strip():
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
    except Exception:  # noqa: BLE001 - an unknown grammar: collect everything, as pytest does
        return False
    names = set(re.findall(r"(?:\w|:|\+|-|\.|\[|\]|\\|/)+", markexpr))
    others = sorted(names - {"and", "or", "not", "True", "False", "None", "integration"})
    if len(others) > 10:
        return False
    for values in itertools.product((False, True), repeat=len(others)):
        marks = {**dict(zip(others, values, strict=True)), "integration": True}
        try:
            if expression.evaluate(_marked_with(marks)):
                return False
        except Exception:  # noqa: BLE001
            return False
    return True


def pytest_ignore_collect(collection_path, config):
    """``-m "not integration"``: tests/integration is not imported at all (its modules cost
    seconds to import and every test in them would be deselected)."""
    path = Path(collection_path)
    if (path == INTEGRATION_DIR or INTEGRATION_DIR in path.parents) and \
            _deselects_every_integration_test(config.getoption("markexpr", "") or ""):
        return True
    return None


def pytest_sessionfinish(session):
    """Hypothesis's plugin imports all of Hypothesis (seconds, assertion-rewritten) just to
    print its summary; a session that never imported Hypothesis has nothing to summarize."""
    if "hypothesis" not in sys.modules:
        plugin = session.config.pluginmanager.get_plugin("hypothesispytest")
        if plugin is not None:
            session.config.pluginmanager.unregister(plugin)


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


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    """One SQLite database migrated to head by ``upgrade``, copied by the tests that need one
    (never opened by them: each gets its own copy)."""
    return fast_db.make_template(tmp_path_factory.mktemp("template") / "collector.sqlite3")


@pytest.fixture()
def migrated_sqlite(migrated_sqlite_template, tmp_path):
    """``migrated_sqlite(name)``: the URL of a new migrated SQLite file in ``tmp_path``."""

    def copy(name: str = "collector.sqlite3") -> str:
        return fast_db.copy_of(migrated_sqlite_template, tmp_path / name)

    return copy


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request, tmp_path_factory):
    from collector.db.migrate import upgrade

    if request.param == "sqlite":  # a copy of the session's migrated template
        template = request.getfixturevalue("migrated_sqlite_template")
        return fast_db.copy_of(template, tmp_path_factory.mktemp("db") / "collector.sqlite3")
    server = request.getfixturevalue("postgres_server")
    # pytest may set this session fixture up again for the same parameter when the tests
    # of one process interleave (pytest-xdist): the database is made and migrated once.
    if server.port not in _MIGRATED_PG:
        url = server.create_database("collector_test")
        upgrade(url)
        _MIGRATED_PG[server.port] = url
    return _MIGRATED_PG[server.port]


_MIGRATED_PG: dict[int, str] = {}


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
