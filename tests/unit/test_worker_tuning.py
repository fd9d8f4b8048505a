"""What a worker does for speed: small result reprs in Celery's logs and events, no trail of
subtasks, the start-up heap kept out of the garbage collector's scans."""

from __future__ import annotations

import gc

import tasks.hva  # noqa: F401 - registers the endpoint
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
