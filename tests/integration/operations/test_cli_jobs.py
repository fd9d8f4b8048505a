"""``collector jobs`` shows and cancels ledger rows."""

import json
import subprocess
import sys

import pytest

from collector.ids import new_uuid

pytestmark = pytest.mark.integration


def _cli(worker, *args):
    return subprocess.run([sys.executable, "-m", "workers.cli", "jobs", *args],
                          env=worker.env, capture_output=True, text=True, timeout=60)


def test_list_show_and_cancel_a_job(collector_client, worker):
    queue = f"hva-handle.hva.cli{new_uuid()}"
    job_id = collector_client.jobs.submit(queue, "reboot", "i-abc12345")
    listed = _cli(worker, "list", "--queue", queue)
    assert listed.returncode == 0 and job_id in listed.stdout and "pending" in listed.stdout
    shown = json.loads(_cli(worker, "show", job_id).stdout)
    assert shown["job_name"] == "reboot" and shown["params"] == {"args": ["i-abc12345"]}
    cancelled = _cli(worker, "cancel", job_id)
    assert cancelled.returncode == 0 and "cancel" in cancelled.stdout
    again = _cli(worker, "cancel", job_id)
    assert again.returncode == 1 and "AlreadyTerminated" in again.stderr
    missing = _cli(worker, "show", "job-zzzzzzzz")
    assert missing.returncode == 1 and "UnknownJob" in missing.stderr
