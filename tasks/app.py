"""The Collector's Celery application. Task modules register themselves on import."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from collector.db import dispose_engines

TASK_MODULES = [
    "tasks.alarm",
    "tasks.api",
    "tasks.event_bus",
    "tasks.event_hook",
    "tasks.hva",
    "tasks.job_push",
    "tasks.jobqueue",
    "tasks.maintenance",
    "tasks.natbox",
    "tasks.node_collector",
    "tasks.resource",
    "tasks.scheduler",
    "tasks.sta",
]

app = Celery("collector")
app.config_from_object("celeryconfig")
app.conf.include = TASK_MODULES


@worker_process_init.connect
def _fresh_connections(**_kw) -> None:
    # A forked child must not reuse the parent's pooled database connections.
    dispose_engines()
