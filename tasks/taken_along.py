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
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any

KEPT = 20_000  # answers kept (the oldest go first): far more than ever wait in a queue

_answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
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
            try:
                os.write(_writer, json.dumps([task_id, answer]).encode() + b"\n")
            except (BlockingIOError, OSError):
                return
        return
    with _lock:
        _keep(answers.items())


def take(task_id: str | None) -> dict[str, Any] | None:
    """The answer kept for the message ``task_id`` (then forgotten), or None."""
    if not task_id:
        return None
    with _lock:
        _read_children()
        return _answers.pop(task_id, None)


def _keep(items: Any) -> None:
    _answers.update(items)
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
        items.append((task_id, answer))
    _keep(items)
