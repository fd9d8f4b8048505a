"""A message whose job a batch of its worker is placing waits for that batch
(``tasks.taken_along``): answered at receipt with the batch's answer once it commits, run as
usual when the batch settles without one, and never held longer than ``HOLD_MAX``. The batch
runs in a forked pool process, as in a prefork worker: what it says crosses the real pipe."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tasks import base, taken_along


def _job_id() -> str:
    return f"job-{uuid.uuid4().hex}"


def in_pool_child(work) -> None:
    """``work()`` in a forked process (a pool child), waited for."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            work()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_a_job_being_placed_is_held_until_its_batch_answers():
    taken, other = _job_id(), _job_id()
    answer = {"outcome": "noop", "job_id": taken, "state": "finished",
              "finish_status": "success"}
    placing = taken_along.Placing()
    in_pool_child(lambda: placing.announce([taken, other]))
    assert taken_along.being_placed(taken) and taken_along.being_placed(other)
    assert taken_along.take(taken) is None

    # Committed: the job it finished is answered; the one it did not finish runs.
    in_pool_child(lambda: (placing.announce([taken, other]),
                           placing.settle({taken: answer})))
    assert taken_along.take(taken) == answer
    assert not taken_along.being_placed(taken) and not taken_along.being_placed(other)


def test_a_batch_that_rolled_back_holds_nothing():
    job = _job_id()

    def failed_batch() -> None:
        placing = taken_along.Placing()
        placing.announce([job])
        placing.settle()  # what the task layer does when the unit of work failed

    in_pool_child(failed_batch)
    assert not taken_along.being_placed(job) and taken_along.take(job) is None


def test_a_hold_ends_after_hold_max_when_the_batch_says_nothing_more(monkeypatch):
    monkeypatch.setattr(taken_along, "HOLD_MAX", 0.05)
    job = _job_id()
    in_pool_child(lambda: taken_along.Placing().announce([job]))  # then killed, say
    assert taken_along.being_placed(job)
    time.sleep(0.1)
    assert not taken_along.being_placed(job)


class Timer:
    """The worker's timer, stepped by hand."""

    def __init__(self) -> None:
        self.due: list = []

    def call_after(self, _secs: float, fun) -> None:
        self.due.append(fun)

    def step(self) -> None:
        due, self.due = self.due, []
        for fun in due:
            fun()


@pytest.mark.parametrize("committed", [True, False])
def test_the_strategy_answers_or_runs_a_held_message_once_its_batch_settles(committed):
    job = _job_id()
    answer = {"outcome": "noop", "job_id": job, "state": "finished", "finish_status": "success"}
    placing = taken_along.Placing()
    placing.announce([job])  # a batch of the worker's own thread pool
    timer, answered, ran = Timer(), [], []
    base._hold(timer, job, answered.append, lambda: ran.append(job))
    for _ in range(3):
        timer.step()
    assert (answered, ran) == ([], []) and timer.due  # still held, looked at again later
    placing.settle({job: answer} if committed else None)
    timer.step()
    assert (answered, ran) == (([answer], []) if committed else ([], [job]))
    assert not timer.due
