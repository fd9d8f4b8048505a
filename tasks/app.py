"""The Collector's Celery application. Task modules register themselves on import.

Every task is a ``tasks.base.CollectorTask`` (arguments checked, queue checked, arguments
shown masked); a worker keeps only the tasks of the queues it consumes.
"""

from __future__ import annotations

import gc
import pkgutil
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

from collector.config import load_settings, signing_credential
from collector.db import dispose_engines
from collector.signing import COLLECTOR
from tasks import endpoints
from tasks.base import serve_only
from workers.agent.signing import sign_messages

# The event dispatcher, and every module of tasks/endpoints/ (one per wire endpoint).
TASK_MODULES = ["tasks.event_bus", *(f"{endpoints.__name__}.{module.name}"
                                     for module in pkgutil.iter_modules(endpoints.__path__))]

app = Celery("collector", task_cls="tasks.base:CollectorTask")
app.config_from_object("celeryconfig")
app.conf.include = TASK_MODULES
# Everything the Collector publishes (retries, callbacks, beat's tasks) is signed as itself.
sign_messages(app, signing_credential(load_settings(), COLLECTOR))


@worker_process_init.connect
def _fresh_connections(**_kw) -> None:
    # A forked child must not reuse the parent's pooled database connections.
    dispose_engines()
    settle_heap()


@worker_init.connect
def _serve_only_consumed_queues(sender: Any = None, **_kw: Any) -> None:
    # Before the consumer starts: a task of a queue this worker does not consume, or one of
    # Celery's built-ins, is then unknown here and answered NotRegistered, never run.
    if getattr(sender, "app", None) is not app:
        return
    queues = app.amqp.queues
    consumed = queues.consume_from or queues
    serve_only(app, consumed)


@worker_ready.connect
def _ready(**_kw) -> None:
    settle_heap()  # the process that runs the tasks of a thread or solo pool


def settle_heap() -> None:
    """Keep what the worker loaded at start out of the garbage collector's way.

    ``gc.freeze()`` moves every object alive now (modules, the app, compiled statements) to
    a generation the collector never scans: building a document of thousands of vnics no
    longer makes each collection walk the whole worker (a third of get_netfilter_data's
    time at 5,000 vnics). A higher threshold for the young generation lets a document's
    dicts, which die young, go before any collection looks at them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
