"""The task layer of the api and scheduler endpoints, without a broker."""

from __future__ import annotations

import pytest

from collector import errors
from tasks.app import TASK_MODULES, app
from tasks.endpoints import scheduler
from tasks.routing import route_task
from workers.roles import queues_for

# Binding the registry's tasks here warns that Celery 6 drops the ``queue`` task attribute;
# routing does not depend on it (``task_routes`` sends ``<endpoint>.*`` to ``<endpoint>``).
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")


def test_api_and_scheduler_tasks_are_registered_on_their_queues():
    import tasks.endpoints.api  # noqa: F401 - registers the api tasks

    assert {"tasks.endpoints.api", "tasks.endpoints.scheduler"} <= set(TASK_MODULES)
    names = {n for n in app.tasks if n.startswith(("api.", "scheduler."))}
    assert {"api.create_instance", "api.start_instance", "api.stop_instance",
            "api.terminate_instance", "api.create_volume", "api.list_instances",
            "api.show_instance", "api.list_volumes", "api.show_volume",
            "scheduler.schedule_instance", "scheduler.schedule_start_instance",
            "scheduler.schedule_volume"} <= names
    assert route_task("api.create_instance", [], {}, {}) == {"queue": "api"}
    assert route_task("scheduler.schedule_volume", [], {}, {}) == {"queue": "scheduler"}
    assert "api" in queues_for("api") and "api" in queues_for("all")


@pytest.mark.parametrize("outcome", [
    {"outcome": "placed", "instance_id": "i-abcdefgh"},
    {"outcome": "noop", "state": "running"},
    None,
])
def test_placed_and_noop_outcomes_are_the_answer(outcome):
    assert scheduler.fail_on_failed_outcome(outcome) == outcome


def test_a_failed_outcome_becomes_its_typed_error():
    with pytest.raises(errors.InsufficientCapacity) as info:
        scheduler.fail_on_failed_outcome({"outcome": "failed", "message": "full",
                                          "error_type": "InsufficientCapacity"})
    assert info.value.message == "full"


def test_an_error_type_the_collector_does_not_know_keeps_its_name():
    exc = scheduler.placement_error("NoMatchingNetworkGroup", "none left")
    assert (exc.error_type, exc.message) == ("NoMatchingNetworkGroup", "none left")
    assert isinstance(exc, errors.PlacementError)
    assert type(scheduler.placement_error("NoMatchingNetworkGroup", "x")) is type(exc)
    odd = scheduler.placement_error("not a name; rm -rf", "x")
    assert type(odd) is errors.PlacementError and "not a name" in odd.message


def test_evacuation_tasks_and_the_offline_subscription_are_registered():
    import tasks.endpoints.api  # noqa: F401 - registers the api tasks
    from tasks.event_bus import matching

    assert {"api.evacuate_host", "scheduler.evacuate_from"} <= set(app.tasks)
    assert route_task("scheduler.evacuate_from", [], {}, {}) == {"queue": "scheduler"}
    [sub] = [s for s in matching("node_collector/offline", "collector.master")
             if s.role == "scheduler"]
    assert (sub.queue, sub.task_name) == ("events.scheduler",
                                          "events.scheduler.on_node_offline")
    assert app.tasks[sub.task_name].queue == "events.scheduler"
    assert queues_for("scheduler") == ("scheduler", "events.scheduler")
    assert "events.scheduler" in queues_for("all")
