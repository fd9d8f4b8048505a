"""``collector stats``: ledger outcomes per queue, outbox backlog, node and instance states."""

from __future__ import annotations

from collector import messaging, sample_data
from collector.ids import new_uuid
from collector.services import jobqueue
from collector.services.stats import collector_stats


def test_stats_count_jobs_per_queue_by_outcome_and_the_unsent_outbox(session):
    queue = f"hva-handle.hva.st{new_uuid()}"
    before = collector_stats(session)
    ok = messaging.jobs.submit(session, queue, "reboot", "i-x")
    bad = messaging.jobs.submit(session, queue, "reboot", "i-y")
    messaging.jobs.submit(session, queue, "reboot", "i-z")
    jobqueue.running(session, ok, "w1")
    jobqueue.finish_success(session, ok)
    jobqueue.running(session, bad, "w1")
    jobqueue.finish_fail(session, bad, "disk full")
    sample_data.node_state(session, f"hva.st{new_uuid()}", "timeout")

    after = collector_stats(session)
    assert after["jobs"][queue] == {"pending": 1, "running": 0, "succeeded": 1, "failed": 1,
                                    "cancelled": 0}
    assert after["outbox"]["unsent"] == before["outbox"]["unsent"] + 3
    assert after["outbox"]["oldest_unsent_age_sec"] is not None
    assert after["nodes"].get("timeout", 0) == before["nodes"].get("timeout", 0) + 1
