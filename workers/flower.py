"""Flower, every path behind the same basic auth.

Flower checks credentials only on the handlers it marks as authenticated; its Prometheus
``/metrics`` and ``/healthcheck`` are open by default (they name every task and worker).
Here they ask for the same credentials as the rest before Flower starts.
"""

from __future__ import annotations

from celery import Celery


def _require_auth_everywhere() -> None:
    import tornado.web
    from flower.views import monitor

    for handler in (monitor.Metrics, monitor.Healthcheck):
        if not getattr(handler.get, "_collector_auth", False):
            guarded = tornado.web.authenticated(handler.get)
            guarded._collector_auth = True  # type: ignore[attr-defined]
            handler.get = guarded


def run_flower(app: Celery, address: str, port: int, basic_auth: str) -> int:
    """Run Flower for ``app`` on ``address:port`` (``basic_auth`` is ``user:password``);
    returns its exit status."""
    from workers.agent.client import run_celery

    _require_auth_everywhere()
    return run_celery(app, ["flower", f"--address={address}", f"--port={port}",
                            f"--basic_auth={basic_auth}"])
