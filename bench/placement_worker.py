"""``collector worker`` that also counts, for the placement bench (``bench.placement``):

- the CPU time of the relay (``tasks.execution.relay_after_commit``: publish the committed
  outbox rows, then stamp them sent), measured on the calling thread, so that the bench can
  show the relay as a role of its own and the worker's other work without it;
- the SQL statements this process sends (every engine's ``before_cursor_execute``).

The counters go to ``$BENCH_PLACEMENT_STATS/<pid>`` as JSON, rewritten every quarter
second by a daemon thread. Run: ``python -m bench.placement_worker --role scheduler`` (the
arguments of ``collector worker``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

_COUNTS = {"relay_cpu_s": 0.0, "relay_calls": 0, "statements": 0}
_LOCK = threading.Lock()
_STARTED: set[int] = set()


def _writer(folder: str) -> None:
    path = os.path.join(folder, str(os.getpid()))
    while True:
        with _LOCK:
            text = json.dumps(_COUNTS)
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
        time.sleep(0.25)


def _ensure_writer() -> None:
    folder = os.environ.get("BENCH_PLACEMENT_STATS")
    if folder and os.getpid() not in _STARTED:
        _STARTED.add(os.getpid())
        threading.Thread(target=_writer, args=(folder,), daemon=True).start()


def _count_statement(*_args: Any) -> None:
    _ensure_writer()
    with _LOCK:
        _COUNTS["statements"] += 1


def install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import tasks.execution

    relay = tasks.execution.relay_after_commit

    def timed_relay(outbox_rows: list[Any]) -> None:
        began = time.thread_time()
        try:
            relay(outbox_rows)
        finally:
            spent = time.thread_time() - began
            _ensure_writer()
            with _LOCK:
                _COUNTS["relay_cpu_s"] += spent
                _COUNTS["relay_calls"] += 1

    tasks.execution.relay_after_commit = timed_relay
    event.listen(Engine, "before_cursor_execute", _count_statement)
    _ensure_writer()


def main() -> None:
    from workers.cli.main import main as collector

    install()
    collector(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
