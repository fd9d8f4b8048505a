"""The Collector's Celery application. Task modules register themselves on import."""

from __future__ import annotations

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init

from collector import messaging
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


def _relay(row_ids: list[int]) -> None:
    from collector.relay import publish_rows, publisher

    publish_rows(publisher(app.conf.broker_url), row_ids)


@worker_init.connect
@beat_init.connect
def _install_relay(**_kw) -> None:
    # Only Collector processes relay right after commit; elsewhere (CLI, tests of the
    # domain) rows wait for the sweep, exactly as after a crash between commit and publish.
    messaging.set_relay(_relay)


@worker_process_init.connect
def _fresh_connections(**_kw) -> None:
    # A forked child must not reuse the parent's pooled database connections.
    dispose_engines()
