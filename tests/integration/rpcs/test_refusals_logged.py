"""A real worker logs an expected refusal as one line, an unexpected error with its traceback.

Through the session's worker (role all, SQLite and PostgreSQL): ``api.show_instance`` of an
unknown id and a ``scheduler.schedule_instance`` no host has room for are answered with
their typed errors and logged as one INFO line each, no traceback. A call that fails
inside the Collector (its table renamed away for the moment) still logs at ERROR with the
traceback.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from collector import wire
from collector.db import unit_of_work
from workers.agent.client import RpcError
from workers.demo.world import placement

pytestmark = pytest.mark.integration

LIST_NODES = wire.task(wire.NODE_COLLECTOR, "list")
# Celery's worker log line: "[<time>: <LEVEL>/<process>] <message>".
LEVEL = re.compile(r"^\[[^\]]*: (?P<level>[A-Z]+)/[^\]]*\] ")


def _logged_call(worker: Any, call: Callable[[], Any], mark: str) -> tuple[RpcError, str]:
    """Run ``call`` (it must fail), then wait for the worker's failure line naming ``mark``;
    returns the error and what the worker logged from the call on."""
    start = len(worker.log_text())
    with pytest.raises(RpcError) as failed:
        call()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged = worker.log_text()[start:]
        if any(" raised " in line and mark in line for line in logged.splitlines()):
            time.sleep(0.3)  # a traceback is written right after its line
            return failed.value, worker.log_text()[start:]
        time.sleep(0.1)
    raise AssertionError(f"no failure line naming {mark!r}:\n{worker.log_text()[start:]}")


def _failure_line(logged: str, mark: str) -> str:
    [line] = [line for line in logged.splitlines() if " raised " in line and mark in line]
    return line


def _level(line: str) -> str:
    match = LEVEL.match(line)
    assert match, line
    return match["level"]


def _one_info_line(worker, call, marker: str, error_type: str) -> None:
    """``call()`` is refused with ``error_type``, logged as one INFO line, no traceback."""
    error, logged = _logged_call(worker, call, marker)
    assert error.error_type == error_type
    line = _failure_line(logged, marker)
    assert f"raised expected: {error_type}" in line and _level(line) == "INFO"
    assert "Traceback" not in logged


def test_an_unknown_id_is_one_info_line(worker, collector_client):
    unknown = f"i-{secrets.token_hex(4)}"
    _one_info_line(worker, lambda: collector_client.rpc(wire.API).show_instance(unknown),
                   unknown, "UnknownInstanceID")


def test_a_placement_without_room_is_one_info_line(worker, collector_client, db_url):
    with unit_of_work(db_url) as session:
        world = placement.build(session, [placement.HostSize.slots(2)],
                                hypervisor=f"kvm-{secrets.token_hex(3)}")
        [inst] = world.awaiting_placement(session, 1, cpu_cores=64)
    _one_info_line(worker, lambda: collector_client.rpc(wire.SCHEDULER).schedule_instance(inst),
                   inst, "InsufficientCapacity")


def test_an_unexpected_failure_keeps_its_traceback(worker, collector_client, db_url):
    with unit_of_work(db_url) as session:  # its table gone for the moment
        session.execute(text("ALTER TABLE node_states RENAME TO node_states_away"))
    try:
        error, logged = _logged_call(
            worker, lambda: collector_client.rpc(wire.NODE_COLLECTOR).list(),
            f"{LIST_NODES}[")
    finally:
        with unit_of_work(db_url) as session:
            session.execute(text("ALTER TABLE node_states_away RENAME TO node_states"))
    # PostgreSQL: an unknown table is a bug (InternalError); SQLite says it as an
    # OperationalError, which the Collector reads as TransientError. Both are unexpected.
    assert error.error_type in ("InternalError", "TransientError")
    line = _failure_line(logged, f"{LIST_NODES}[")
    assert f"raised unexpected: {error.error_type}" in line and _level(line) == "ERROR"
    assert "Traceback" in logged.split(line, 1)[1]
