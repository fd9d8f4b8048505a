"""Without a ping before each call, a worker whose database connections were dropped (a
PostgreSQL restart, a proxy closing idle connections) still answers: the call that finds
its connection dead runs again on a fresh one."""

from __future__ import annotations

import psycopg
import pytest

from collector.db import dispose_engines, unit_of_work
from workers.demo.world import make

pytestmark = pytest.mark.integration


def _drop_connections(db_url: str) -> int:
    """Terminate every other session on the worker's database; how many there were. This
    process's own pools are emptied too (the tests after this one use them)."""
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        dropped = len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())
    dispose_engines()
    return dropped


def test_reads_and_writes_survive_dropped_connections(worker, collector_client):
    if not worker.db_url.startswith("postgresql"):
        pytest.skip("SQLite has no connection to lose")
    with unit_of_work(worker.db_url) as session:
        inst = make.running_instance(session).canonical_uuid
    hva = collector_client.rpc("hva-collector")
    for _ in range(8):  # several pooled connections in the worker, readers' and writers'
        hva.get_instance(inst)
        hva.update_instance(inst, {"status": "online"})
    assert _drop_connections(worker.db_url) > 0
    for status in ("offline", "online", "offline"):
        assert hva.get_instance(inst)["uuid"] == inst
        hva.update_instance(inst, {"status": status})
        assert hva.get_instance(inst)["status"] == status
    assert "running the transaction again" in worker.log_text()
