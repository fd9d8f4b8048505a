"""What the commands that go through the ``api`` endpoint share: the client, one call with
its typed error printed, the common options, and printing an answer as JSON or as lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from collector import wire
from collector.config import load_settings


@contextmanager
def api_client(timeout: float | None) -> Iterator[Any]:
    from workers.agent.client import Collector

    settings = load_settings()
    if not settings.broker_url:
        raise click.UsageError("set COLLECTOR_BROKER_URL: requests go through the Collector")
    with Collector(settings.broker_url, settings.result_backend,
                   timeout=timeout or settings.rpc_timeout) as client:
        yield client


def call_api(client: Any, method: str, *args: Any, as_json: bool = False) -> Any:
    """``api.<method>(*args)``; a typed error is printed (as JSON with ``as_json``) and the
    command exits 1."""
    from workers.agent.client import RpcError

    try:
        return client.call(wire.API, method, *args)
    except RpcError as exc:
        if as_json:
            click.echo(json.dumps({"error_type": exc.error_type, "message": exc.message}),
                       err=True)
        else:
            click.echo(f"{exc.error_type}: {exc.message}", err=True)
        sys.exit(1)


def api_options(fn: Callable) -> Callable:
    """``--json`` and ``--timeout``."""
    fn = click.option("--json", "as_json", is_flag=True, help="print JSON")(fn)
    return click.option("--timeout", type=float, default=None,
                        help="seconds to wait for each answer")(fn)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def print_listing(docs: list[dict[str, Any]], as_json: bool, header: str,
                  line: Callable[[dict[str, Any]], str]) -> None:
    """The documents as JSON, or a header and one line each."""
    if as_json:
        print_json(docs)
        return
    click.echo(header)
    for doc in docs:
        click.echo(line(doc))
