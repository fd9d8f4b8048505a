"""A hostname is one instance's in its account, however many requests ask for it at once:
6 processes call ``api.create_instance`` with the same hostname on PostgreSQL. The lease is
one ``INSERT ... ON CONFLICT DO NOTHING`` (a concurrent insert of the same key waits for the
other's commit): exactly one request gets it, the others are refused with
InvalidParameter, and a refused request leaves nothing behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.db import unit_of_work
from collector.errors import CollectorError
from collector.models import HostnameLease, Instance, QueuedJob
from tests.support.placement_cluster import run_at_once
from workers.demo.world import placement

pytestmark = pytest.mark.integration

REQUESTS = 6


def _create(url: str, params: dict, start: object, results: object) -> None:
    from collector.services.api import instances as api

    start.wait()
    try:
        with unit_of_work(url) as session:
            results.put(("created", api.create_instance(session, params)["id"]))
    except CollectorError as exc:
        results.put((exc.error_type, exc.message))


def test_one_of_several_requests_for_the_same_hostname_gets_it(race_db):
    with unit_of_work(race_db) as session:
        world = placement.build(session, [placement.HostSize.slots(8)], cidr="10.62.0.0/24")
        ids = world.ids()
    params = {"image_id": ids["image"], "hypervisor": "kvm", "cpu_cores": 1,
              "memory_size": 512, "hostname": "web1"}
    results = run_at_once([(_create, race_db, params)] * REQUESTS)
    outcomes = sorted(kind for kind, _ in results)
    assert outcomes == ["InvalidParameter"] * (REQUESTS - 1) + ["created"], results
    assert all("hostname 'web1' is already used" in detail
               for kind, detail in results if kind != "created")
    [winner] = [detail for kind, detail in results if kind == "created"]
    with unit_of_work(race_db) as session:
        assert session.scalar(select(func.count()).select_from(HostnameLease)) == 1
        assert [f"i-{u}" for u in session.scalars(select(Instance.uuid))] == [winner]
        assert session.scalar(select(func.count()).select_from(QueuedJob)) == 1
