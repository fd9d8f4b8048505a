"""Fixtures of the placement integration tests; their helpers are in
``tests/support/placement_cluster.py``."""

from __future__ import annotations

import pytest

from collector.ids import new_uuid


@pytest.fixture()
def race_db(postgres_server) -> str:
    """A new PostgreSQL database, migrated, for one race test: its checks count every row."""
    from collector.db.migrate import upgrade

    url = postgres_server.create_database(f"race_{new_uuid()}")
    upgrade(url)
    return url
