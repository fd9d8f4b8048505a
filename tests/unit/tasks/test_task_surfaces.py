"""What a worker runs: its own queues' tasks, each from its own queue, arguments checked.

No servers: a throwaway Celery app with the Collector's task class, run eagerly.
"""

from __future__ import annotations

import pytest
from celery import Celery

from collector.errors import InvalidArgument
from tasks.base import serve_only, served_here

# Celery 6 drops the ``queue`` task attribute for routing; here it names the serving queue.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")


@pytest.fixture()
def app():
    app = Celery("surfaces", task_cls="tasks.base:CollectorTask", set_as_current=False)
    app.conf.update(task_always_eager=False)

    @app.task(name="a.ping", queue="a", shared=False)
    def ping() -> str:
        return "pong"

    @app.task(name="a.add", queue="a", shared=False)
    def add(x: int, y: int = 1) -> int:
        return x + y

    @app.task(name="b.work", queue="b", shared=False)
    def work() -> None: ...

    @app.task(name="e.deliver", queue="events", topic_exchange="collector.events",
              shared=False)
    def deliver(event: str, args: list, sender: str) -> int:
        return len(args)

    app.finalize()
    return app


def test_only_the_consumed_queues_tasks_stay_registered(app):
    assert any(name.startswith("celery.") for name in app.tasks)
    removed = serve_only(app, ["a"])
    assert sorted(app.tasks) == ["a.add", "a.ping"]
    assert "b.work" in removed and "e.deliver" in removed
    assert all(not name.startswith("celery.") for name in app.tasks)


def test_a_task_runs_only_from_its_own_queue(app):
    ping, deliver = app.tasks["a.ping"], app.tasks["e.deliver"]
    assert served_here(ping, {"exchange": "", "routing_key": "a"})
    assert not served_here(ping, {"exchange": "", "routing_key": "b"})
    assert not served_here(ping, {"exchange": "a", "routing_key": "collector"})
    assert not served_here(ping, {})
    assert served_here(deliver, {"exchange": "collector.events",
                                 "routing_key": "hva/instance_started.hva.x"})
    assert served_here(deliver, {"exchange": "", "routing_key": "events"})
    assert not served_here(deliver, {"exchange": "", "routing_key": "a"})


@pytest.mark.parametrize("name, args, kwargs", [
    ("a.ping", [1], {}),
    ("a.ping", [], {"x": 1}),
    ("a.add", [], {}),
    ("a.add", ["1"], {}),
    ("a.add", [True], {}),
    ("a.add", [2 ** 64], {}),
    ("a.add", [1], {"z": 2}),
    ("e.deliver", ["e", "not a list", "s"], {}),
    ("e.deliver", ["e", [float("nan")], "s"], {}),
])
def test_wrong_arguments_are_invalid_argument_before_the_body(app, name, args, kwargs):
    result = app.tasks[name].apply(args=args, kwargs=kwargs)
    assert result.failed()
    assert isinstance(result.result, InvalidArgument)


def test_right_arguments_run(app):
    assert app.tasks["a.add"].apply(args=[2], kwargs={"y": 3}).get() == 5
    assert app.tasks["e.deliver"].apply(args=["e", [1, 2], "s"]).get() == 2
