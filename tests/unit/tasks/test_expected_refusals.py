"""Expected refusals are one log line; unexpected errors keep their traceback.

A typed refusal (an unknown id, no room, no address left, a bad argument, ...) is what a
Collector task answers by design: the worker logs it as one INFO line, no traceback
(Celery's ``Task.throws`` = ``tasks.base.EXPECTED_ERRORS``). ``InternalError`` and
``TransientError`` (something failed inside the Collector or its database) and any
exception that is no ``CollectorError`` are logged at ERROR with their traceback.

No servers: Celery's own log policy, and a throwaway app with the Collector's task class
run eagerly (Celery's tracer logs a failure the same way in a worker).
"""

from __future__ import annotations

import logging

import pytest
from celery import Celery
from celery.app.trace import get_log_policy

from collector import errors
from tasks.base import EXPECTED_ERRORS, CollectorTask

# Celery 6 drops the ``queue`` task attribute for routing; here it names the serving queue.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")

EXPECTED = [errors.UnknownInstanceID("unknown id 'i-nothere0'"),
            errors.InsufficientCapacity("no host has 64 cpu cores free"),
            errors.OutOfIpRange("Run out of dynamic IP addresses"),
            errors.InvalidArgument("instance_id must be a string"),
            errors.InvalidInstanceState("cannot stop i-abc: it is stopped, not running"),
            errors.WrongQueue("served from queue 'api'"),
            # A placement error the scheduler names at run time (tasks.endpoints.scheduler).
            type("SomeNewPlacementError", (errors.PlacementError,), {})("refused")]
UNEXPECTED = [errors.InternalError("unexpected KeyError in the Collector"),
              errors.TransientError("the database cannot serve the call now"),
              KeyError("host_node_id"), RuntimeError("boom")]


class _Einfo:
    internal = False


def _name(exc: BaseException) -> str:
    return type(exc).__name__


@pytest.mark.parametrize("exc", EXPECTED, ids=_name)
def test_typed_refusals_are_logged_at_info_without_a_traceback(exc):
    policy = get_log_policy(CollectorTask(), _Einfo(), exc)
    assert (policy.severity, policy.traceback, policy.description) == (
        logging.INFO, 0, "raised expected")


@pytest.mark.parametrize("exc", UNEXPECTED, ids=_name)
def test_internal_transient_and_untyped_errors_keep_error_and_traceback(exc):
    policy = get_log_policy(CollectorTask(), _Einfo(), exc)
    assert (policy.severity, policy.traceback) == (logging.ERROR, 1)


def test_every_typed_error_is_expected_but_the_internal_ones():
    for name, cls in errors.ALL_ERRORS.items():
        internal = issubclass(cls, errors.InternalError)
        assert issubclass(cls, EXPECTED_ERRORS) is (not internal and cls is not
                                                    errors.CollectorError), name


def test_every_collector_task_throws_the_expected_errors():
    from tasks.app import app
    from tasks.registry import EXPOSED

    app.loader.import_default_modules()
    assert EXPOSED
    for name in EXPOSED:
        assert app.tasks[name].throws == EXPECTED_ERRORS, name


@pytest.fixture()
def eager_app():
    app = Celery("refusals", task_cls="tasks.base:CollectorTask", set_as_current=False)
    app.conf.update(task_always_eager=True, result_backend="cache+memory://")

    @app.task(name="a.refuse", queue="a", shared=False)
    def refuse() -> None:
        raise errors.UnknownInstanceID("unknown id 'i-nothere0'")

    @app.task(name="a.crash", queue="a", shared=False)
    def crash() -> None:
        raise KeyError("host_node_id")

    app.finalize()
    return app


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _failure_records(app, name: str) -> list[logging.LogRecord]:
    """What Celery's tracer logged of the task's failure (a handler on its own logger:
    other tests may have configured logging, propagation included)."""
    logger = logging.getLogger("celery.app.trace")
    handler, saved = _Records(), (logger.level, logger.disabled)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    try:
        app.tasks[name].apply()
    finally:
        logger.removeHandler(handler)
        logger.level, logger.disabled = saved
    return [r for r in handler.records if " raised " in r.getMessage()]


def _text(record: logging.LogRecord) -> str:
    return logging.Formatter().format(record)


def test_a_task_refusing_logs_one_info_line_without_traceback(eager_app):
    [record] = _failure_records(eager_app, "a.refuse")
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "raised expected: UnknownInstanceID" in record.getMessage()
    assert "Traceback" not in _text(record)


def test_a_task_failing_unexpectedly_logs_its_traceback(eager_app):
    [record] = _failure_records(eager_app, "a.crash")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "raised unexpected: KeyError" in record.getMessage()
    assert "Traceback" in _text(record)
