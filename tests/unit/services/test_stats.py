"""``collector stats``: ledger outcomes per queue, outbox backlog, node and instance states."""

from __future__ import annotations

from collector.db import outbox
from collector.ids import new_uuid
from collector.services.jobs import ledger as jobqueue
from collector.services.stats import collector_stats
from workers.demo.world import make


def test_stats_count_jobs_per_queue_by_outcome_and_the_unsent_outbox(session):
    queue = f"hva-handle.hva.st{new_uuid()}"
    before = collector_stats(session)
    ok = outbox.jobs.submit(session, queue, "reboot", "i-x")
    bad = outbox.jobs.submit(session, queue, "reboot", "i-y")
    outbox.jobs.submit(session, queue, "reboot", "i-z")
    jobqueue.running(session, ok, "w1")
    jobqueue.finish_success(session, ok)
    jobqueue.running(session, bad, "w1")
    jobqueue.finish_fail(session, bad, "disk full")
    make.node_state(session, f"hva.st{new_uuid()}", "timeout")

    after = collector_stats(session)
    assert after["jobs"][queue] == {"held": 0, "pending": 1, "running": 0, "succeeded": 1,
                                    "failed": 1, "cancelled": 0}
    assert after["outbox"]["unsent"] == before["outbox"]["unsent"] + 3
    assert after["outbox"]["oldest_unsent_age_sec"] is not None
    assert after["nodes"].get("timeout", 0) == before["nodes"].get("timeout", 0) + 1


def test_node_overview_shows_liveness_and_capacity_used_of_total(session):
    from collector.services.stats import node_overview

    host = make.host_node(session, offering_cpu_cores=8, offering_memory_size=16384)
    inst = make.instance(session, host, cpu_cores=2, memory_size=4096)
    row = next(n for n in node_overview(session) if n["node_id"] == host.node_id)
    assert row["kind"] == "host" and row["state"] == "online" and row["last_heartbeat"]
    assert row["cpu_cores"] == {"used": 2, "total": 8}
    assert row["memory_mb"] == {"used": 4096, "total": 16384}
    assert inst.host_node_id == host.id
