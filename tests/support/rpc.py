"""Calls through a real worker that the RPC tests share (``workers.agent.client.Collector``).

- ``rpc_error(client, endpoint, method, *args)``: the RpcError the call must raise.
- ``rpc_reader(client, endpoint)``: ``read(method, *args)`` for a happy-path check to read
  back what a call wrote (``"endpoint.method"`` reads from another endpoint).
- ``signed_celery(broker, backend)``: a plain Celery app whose messages are signed as the
  operator (every Collector task refuses an unsigned one), for tests that play the Collector
  or the operator with plain Celery.
- ``method_tests(endpoint, happy, unknown)``: the happy-path and unknown-id tests of every
  method of an endpoint, from its tables (``tests/integration/rpcs/test_*_rpcs.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from celery import Celery

from collector.config import load_settings, signing_credential
from collector.signing import OPERATOR
from workers.agent.client import Collector, RpcError
from workers.agent.signing import sign_messages


def signed_celery(broker: str, backend: str | None = None, **conf: Any) -> Celery:
    """A plain Celery app on ``broker`` whose messages carry the operator's signature."""
    app = Celery(broker=broker, backend=backend, set_as_current=False)
    app.conf.update(**conf)
    return sign_messages(app, signing_credential(load_settings(), OPERATOR))


def rpc_error(client: Collector, endpoint: str, method: str, *args: Any) -> RpcError:
    """The RpcError ``client.call(endpoint, method, *args)`` raises (it must raise one)."""
    with pytest.raises(RpcError) as info:
        client.call(endpoint, method, *args)
    return info.value


def rpc_reader(client: Collector, endpoint: str) -> Callable[..., Any]:
    """``read(method, *args)``: ``method`` called on ``endpoint``, or on the endpoint it names
    (``"sta-collector.get_image"``)."""

    def read(method: str, *args: Any) -> Any:
        name = method.split(".", 1) if "." in method else (endpoint, method)
        return client.call(*name, *args)

    return read


def method_tests(endpoint: str, happy: Sequence[tuple[str, Callable, Callable]],
                 unknown: Sequence[tuple[str, list, str]]) -> tuple[Callable, Callable]:
    """``test_happy_path`` and ``test_unknown_id`` of ``endpoint``, for a test module to bind
    to those names (pytest collects them there, with the module's ``world`` fixture).

    ``happy``: ``(method, args(world), check(result, world, read))``, ``read`` as
    ``rpc_reader`` gives it; ``unknown``: ``(method, args, error type)``."""

    @pytest.mark.parametrize("method, args, check", happy, ids=[c[0] for c in happy])
    def test_happy_path(collector_client, world, method, args, check):
        result = collector_client.call(endpoint, method, *args(world))
        assert check(result, world, rpc_reader(collector_client, endpoint))

    @pytest.mark.parametrize("method, args, error", unknown, ids=[c[0] for c in unknown])
    def test_unknown_id(collector_client, method, args, error):
        assert rpc_error(collector_client, endpoint, method, *args).error_type == error

    return test_happy_path, test_unknown_id
