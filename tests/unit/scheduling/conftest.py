"""Fixtures of the scheduling tests; their builders are in ``tests/support/scheduling.py``."""

from __future__ import annotations

import pytest

from tests.support.scheduling import World, make_world


@pytest.fixture()
def world(session) -> World:
    """Hosts of a hypervisor only this test uses, the only MAC range and online storage."""
    return make_world(session)
