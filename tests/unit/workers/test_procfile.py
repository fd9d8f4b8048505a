"""The Procfile runs the whole installation: one worker line per role, derived roles only."""

from __future__ import annotations

import shlex

from tasks.routing import ALL, ROLE_QUEUES
from tests.support.paths import ROOT


def procfile_roles() -> list[str]:
    roles = []
    for line in (ROOT / "Procfile").read_text().splitlines():
        argv = shlex.split(line.partition(":")[2])
        if argv[:2] == ["collector", "worker"]:
            roles.append(argv[argv.index("--role") + 1])
    return roles


def test_the_procfile_has_one_worker_per_role():
    roles = procfile_roles()
    assert sorted(roles) == sorted(set(ROLE_QUEUES) - {ALL})


def test_every_queue_of_the_collector_is_consumed_by_a_role():
    from tasks.app import app

    served = {queue for role, queues in ROLE_QUEUES.items() if role != ALL for queue in queues}
    assert {queue.name for queue in app.conf.task_queues} == served
    tasks_queues = {getattr(task, "queue", None) for name, task in app.tasks.items()
                    if not name.startswith("celery.")}
    assert tasks_queues <= served
