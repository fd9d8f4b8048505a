"""What a worker does for speed: small result reprs in Celery's logs and events, no trail of
subtasks, the start-up heap kept out of the garbage collector's scans."""

from __future__ import annotations

import gc

import tasks.endpoints.hva_collector  # noqa: F401 - registers the endpoint
from tasks.app import app, settle_heap
from tasks.registry import RESULT_REPR_CHARS


def test_rpc_tasks_keep_only_a_short_repr_of_their_answer():
    task = app.tasks["hva-collector.get_instance"]
    assert task.resultrepr_maxsize == RESULT_REPR_CHARS <= 200
    assert task.trail is False


def test_settling_the_heap_freezes_what_is_loaded():
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] >= 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _worker_argv(monkeypatch, *args):
    from click.testing import CliRunner

    import workers.worker
    from workers.cli.main import main

    seen = []
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(workers.worker, "run_celery",
                        lambda _app, argv: seen.append(argv) or 0)
    result = CliRunner().invoke(main, ["worker", *args])
    assert result.exit_code == 0, result.output
    argv = seen[0]
    return argv[argv.index("--pool") + 1], int(argv[argv.index("--concurrency") + 1])


def test_each_role_runs_its_own_pool_unless_told(monkeypatch):
    import os

    monkeypatch.delenv("COLLECTOR_WORKER_CONCURRENCY", raising=False)
    assert _worker_argv(monkeypatch, "--role", "hva-collector") == ("prefork", os.cpu_count())
    assert _worker_argv(monkeypatch, "--role", "sta-collector") == ("threads", 4)
    assert _worker_argv(monkeypatch, "--role", "all") == ("threads", 4)
    assert _worker_argv(monkeypatch, "--role", "scheduler") == ("prefork", 2)
    assert _worker_argv(monkeypatch, "--role", "hva-collector", "--pool", "threads",
                        "-c", "8") == ("threads", 8)
    monkeypatch.setenv("COLLECTOR_WORKER_CONCURRENCY", "3")
    assert _worker_argv(monkeypatch, "--role", "hva-collector") == ("prefork", 3)
