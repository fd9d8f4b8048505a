"""Flower, every path behind the same basic auth.

Flower checks credentials only on the handlers it marks as authenticated; its Prometheus
``/metrics`` and ``/healthcheck`` are open by default (they name every task and worker).
Here they ask for the same credentials as the rest before Flower starts.

Flower reads the broker's queues with its own Redis client, built from the URL kombu gives
back for the connection; with the transport named by class (``broker_transport``) that URL's
scheme is the class path, which Flower does not know (its broker page and queue lengths
answered 404). It is given the configured URL instead: ``redis://``, ``rediss://`` (with
``broker_use_ssl``) or a Sentinel list (with ``broker_transport_options``' master name).
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


def _broker_url_as_configured() -> None:
    from flower.app import Flower
    from kombu.utils.url import maybe_sanitize_url

    from collector.config import first_url

    if getattr(Flower, "_collector_broker_url", False):
        return
    Flower.broker_uri_with_password = property(  # type: ignore[assignment]
        lambda self: first_url(self.capp.conf.broker_url))
    Flower.broker_uri = property(  # type: ignore[assignment]
        lambda self: maybe_sanitize_url(first_url(self.capp.conf.broker_url)))
    Flower._collector_broker_url = True  # type: ignore[attr-defined]


def run_flower(app: Celery, address: str, port: int, basic_auth: str) -> int:
    """Run Flower for ``app`` on ``address:port`` (``basic_auth`` is ``user:password``);
    returns its exit status."""
    from workers.agent.client import run_celery

    _require_auth_everywhere()
    _broker_url_as_configured()
    return run_celery(app, ["flower", f"--address={address}", f"--port={port}",
                            f"--basic_auth={basic_auth}"])
