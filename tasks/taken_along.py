"""Messages of jobs that a batch in this process already finished: answered at receipt.

A ``schedule_instance`` job takes along the placements waiting with it
(``collector.services.jobs.own_jobs``); their own messages arrive later and would answer
``noop`` after a transaction of their own. Once the batch has committed, the answers of the
jobs it took along are kept here (``remember``), and the strategy (``tasks.base``) answers
such a message at once (``take``): acknowledged, its noop answer stored, no task run and no
transaction. Only what this process committed is kept, so nothing is answered that the
ledger does not already say; a message this process never heard of (a batch in another
process took its job) runs as before and finds its job finished.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

KEPT = 20_000  # answers kept (the oldest go first): far more than ever wait in a queue

_answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def remember(answers: dict[str, dict[str, Any]] | None) -> None:
    """Keep the answers (message id -> answer) of jobs a committed batch finished."""
    if not answers:
        return
    with _lock:
        _answers.update(answers)
        while len(_answers) > KEPT:
            _answers.popitem(last=False)


def take(task_id: str | None) -> dict[str, Any] | None:
    """The answer kept for the message ``task_id`` (then forgotten), or None."""
    if not task_id:
        return None
    with _lock:
        return _answers.pop(task_id, None)
