"""Messages of jobs that a batch in this worker already finished: answered at receipt.

A ``schedule_instance`` job takes along the placements waiting with it
(``collector.services.jobs.own_jobs``); their own messages arrive later and would answer
``noop`` after a transaction of their own. Once the batch has committed, the answers of the
jobs it took along are kept here (``remember``), and the strategy (``tasks.base``) answers
such a message at once (``take``): acknowledged, its noop answer stored, no task run and no
transaction. Only what this worker committed is kept, so nothing is answered that the
ledger does not already say; a message this worker never heard of (a batch in another
worker took its job) runs as before and finds its job finished.

The strategy runs in the worker's main process. With a thread pool the batch commits there
too; with a prefork pool it commits in a child, which writes the answers, a line each, to a
pipe made before the children were forked, and the main process reads what is there at each
``take``. A write that would block (nobody read for a long time) is dropped: the message then
simply runs.

A batch also says which jobs it is taking along before it places them (``Placing``): a
message of one of them that arrives meanwhile is held by the strategy (``being_placed``)
until the batch has settled, then answered at receipt, or run when the batch answered
nothing for it (it rolled back, or did not finish that job). Without this, the second pool
process ran such messages at once, only to wait for the batch's row locks and find their
job finished: about one run in two under single requests. A hold lasts ``HOLD_MAX`` at
most (a batch whose process died says nothing more).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from typing import Any

KEPT = 20_000  # answers kept (the oldest go first): far more than ever wait in a queue
HOLD_MAX = 10.0  # seconds a message waits for the batch placing its job, at most
PLACING, SETTLED = "+placing", "+settled"  # pipe lines that are not answers

_answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
_placing: dict[str, float] = {}  # message id -> held until (monotonic), main process
_lock = threading.Lock()
_main_pid = os.getpid()  # the process that imported this: a worker's main process
_reader, _writer = os.pipe()  # inherited by forked pool children
os.set_blocking(_reader, False)
os.set_blocking(_writer, False)
_partial = b""


def remember(answers: dict[str, dict[str, Any]] | None) -> None:
    """Keep the answers (message id -> answer) of jobs a committed batch finished."""
    if not answers:
        return
    if os.getpid() != _main_pid:  # a pool child: tell the main process
        for task_id, answer in answers.items():  # a line each: one write is atomic
            if not _tell([task_id, answer]):
                return
        return
    with _lock:
        _keep(answers.items())


class Placing:
    """What one unit of work's batch takes along: ``announce`` (the ids, before placing)
    and ``settle`` (after the commit with the batch's answers, or after a failure)."""

    def __init__(self) -> None:
        self.announced: list[str] = []

    def announce(self, task_ids: list[str]) -> None:
        self.announced += task_ids
        _mark(PLACING, task_ids)

    def settle(self, answers: dict[str, dict[str, Any]] | None = None) -> None:
        remember(answers)
        if self.announced:
            _mark(SETTLED, self.announced)
            self.announced = []


def being_placed(task_id: str | None) -> bool:
    """Whether a batch of this worker is placing the job of message ``task_id`` now."""
    if not task_id:
        return False
    with _lock:
        _read_children()
        until = _placing.get(task_id)
        if until is not None and until < time.monotonic():
            del _placing[task_id]
            return False
        return until is not None


def _mark(kind: str, task_ids: list[str]) -> None:
    if not task_ids:
        return
    if os.getpid() != _main_pid:
        _tell([kind, task_ids])
        return
    with _lock:
        _apply(kind, task_ids)


def _apply(kind: str, task_ids: list[str]) -> None:
    if kind == PLACING:
        until = time.monotonic() + HOLD_MAX
        _placing.update((task_id, until) for task_id in task_ids)
    else:
        for task_id in task_ids:
            _placing.pop(task_id, None)


def _tell(line: list[Any]) -> bool:
    """One line to the main process (one write: atomic); False when it would block."""
    try:
        os.write(_writer, json.dumps(line).encode() + b"\n")
    except (BlockingIOError, OSError):
        return False
    return True


def take(task_id: str | None) -> dict[str, Any] | None:
    """The answer kept for the message ``task_id`` (then forgotten), or None."""
    if not task_id:
        return None
    with _lock:
        _read_children()
        return _answers.pop(task_id, None)


def _keep(items: Any) -> None:
    items = list(items)
    _answers.update(items)
    for task_id, _answer in items:
        _placing.pop(task_id, None)
    while len(_answers) > KEPT:
        _answers.popitem(last=False)


def _read_children() -> None:
    """What pool children wrote since the last look (caller holds the lock)."""
    global _partial
    chunks = []
    while True:
        try:
            chunk = os.read(_reader, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return
    *lines, _partial = (_partial + b"".join(chunks)).split(b"\n")
    items = []
    for line in lines:
        try:
            task_id, answer = json.loads(line)
        except ValueError:
            continue
        if task_id in (PLACING, SETTLED):
            _keep(items)  # in order: what was answered before this line
            items = []
            _apply(task_id, answer)
        else:
            items.append((task_id, answer))
    _keep(items)
