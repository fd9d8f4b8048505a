"""Fixtures of the task layer's tests."""

from __future__ import annotations

import pytest

from tasks import execution


@pytest.fixture()
def committed_db(migrated_sqlite, monkeypatch):
    """A migrated SQLite database the tasks commit to (``COLLECTOR_DATABASE_URL``), with
    no broker: nothing is relayed after the commit."""
    from collector.db import dispose_engines

    url = migrated_sqlite("tasks.sqlite3")
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", url)
    monkeypatch.setattr(execution, "relay_after_commit", lambda rows: None)
    yield url
    dispose_engines()
