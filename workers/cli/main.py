"""``collector``: run, inspect and call the Collector."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click

from collector.config import SIGNING_SECRET_FILE, SettingsError, load_settings


def _ensure_broker(data_dir: Path):  # noqa: ANN202 - EmbeddedRedis | None
    """Start the embedded Redis unless COLLECTOR_BROKER_URL names a broker."""
    from workers.embedded_redis import ensure_broker

    redis = ensure_broker(data_dir)
    if redis is not None:
        click.echo(f"embedded redis on 127.0.0.1:{redis.port} (password in "
                   f"{redis.password_path})", err=True)
    return redis


def ensure_signing_secret(data_dir: Path) -> None:
    """The installation's signing secret: COLLECTOR_SIGNING_SECRET, else the one kept in
    ``<data dir>/signing-secret`` (generated on first start, mode 0600), exported for the
    processes started from here."""
    if os.environ.get("COLLECTOR_SIGNING_SECRET"):
        return
    from workers.embedded_redis import kept_secret

    os.environ["COLLECTOR_SIGNING_SECRET"] = kept_secret(data_dir / SIGNING_SECRET_FILE,
                                                         lambda: secrets.token_hex(32))


def _require_signing_secret() -> None:
    """A Collector process signs what it sends and checks what it runs: without the secret
    every message would be refused, so it does not start."""
    settings = load_settings()
    if settings.require_signatures and not settings.signing_secret:
        raise click.UsageError("set COLLECTOR_SIGNING_SECRET (or use `collector up`, which "
                               f"keeps one in {settings.data_dir / SIGNING_SECRET_FILE})")


def _parse_arg(text: str):
    """A CLI argument is JSON when it parses as JSON, else a plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# The packages of this project; a module missing from anywhere else is a missing dependency.
_OWN_PACKAGES = {"collector", "tasks", "workers", "migrations", "celeryconfig", "bench", "tests"}


class _CollectorGroup(click.Group):
    """Commands that need the ``server`` extra say so in one line on a client-only install."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if not missing or missing in _OWN_PACKAGES:
                raise
            raise click.ClickException(
                f"this command needs the server extra (no module {missing!r}): "
                "pip install 'collector[server]'") from None


@click.group(cls=_CollectorGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The control-plane Collector: RPC endpoints, jobs, events and maintenance on Celery."""
    try:
        load_settings()  # a bad setting stops every command here, naming the variable
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema of COLLECTOR_DATABASE_URL."""
    from collector.db.migrate import upgrade

    settings = load_settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}: {settings.database_url}")


@db.command("current")
def db_current() -> None:
    """Show the schema revision of COLLECTOR_DATABASE_URL."""
    from collector.db.migrate import current

    click.echo(current(load_settings().database_url) or "empty")


@main.command()
@click.option("--role", default="all", show_default=True, help="which queues to consume")
@click.option("--concurrency", "-c", type=int, default=None,
              help="worker threads or processes (default: COLLECTOR_WORKER_CONCURRENCY, "
                   "else the role's)")
@click.option("--pool", default=None, type=click.Choice(["threads", "prefork", "solo"]),
              help="default: the role's (see workers/roles.py)")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Celery node name")
def worker(role: str, concurrency: int | None, pool: str | None, loglevel: str,
           hostname: str | None) -> None:
    """Run a worker for one role (or `all`)."""
    from workers.roles import queues_for

    try:
        queues_for(role)  # before loading the app: a wrong role is refused at once
    except ValueError as exc:
        raise click.ClickException(f"--role: {exc}") from None
    settings = load_settings()
    if not settings.broker_url:
        raise click.UsageError("set COLLECTOR_BROKER_URL (or use `collector up`)")
    _require_signing_secret()
    from workers.worker import run_worker, worker_argv

    sys.exit(run_worker(worker_argv(role, settings, concurrency, pool, loglevel, hostname)))


@main.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic scheduler. A second beat waits on the lock in Redis and takes over
    when the first dies (within COLLECTOR_BEAT_LOCK_TIMEOUT seconds)."""
    _require_signing_secret()
    from workers.worker import run_beat

    sys.exit(run_beat(loglevel))


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True)
def flower(address: str, port: int) -> None:
    """Run Flower, every path behind basic auth (COLLECTOR_FLOWER_BASIC_AUTH=user:password),
    Prometheus metrics at /metrics included."""
    from tasks.app import app
    from workers.flower import run_flower

    operator_url = os.environ.get("COLLECTOR_OPERATOR_BROKER_URL")
    if operator_url:  # the operator's own broker user (the embedded Redis exports it)
        app.conf.broker_url = operator_url
    auth = load_settings().flower_basic_auth
    if not auth:
        auth = f"admin:{secrets.token_urlsafe(12)}"
        click.echo(f"COLLECTOR_FLOWER_BASIC_AUTH not set; generated {auth}", err=True)
    sys.exit(run_flower(app, address, port, auth))


@main.command()
@click.option("--procfile", default="Procfile", show_default=True, type=click.Path())
def up(procfile: str) -> None:
    """Start a whole installation from the Procfile, embedded Redis if needed; a process
    that dies is started again (pids in <data dir>/run/)."""
    from honcho.environ import parse_procfile

    from workers.supervisor import Supervisor, echo_stdout

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_signing_secret(settings.data_dir)
    redis = _ensure_broker(settings.data_dir)
    from collector.db.migrate import upgrade

    upgrade(settings.database_url)
    entries = parse_procfile(Path(procfile).read_text()).processes
    # Children find this installation's `collector` even when its venv is not activated.
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        code = Supervisor(entries, env, settings.data_dir / "run", echo_stdout).run()
    finally:
        if redis:
            redis.stop()
    sys.exit(code)


@main.command()
@click.argument("endpoint")
@click.argument("method")
@click.argument("args", nargs=-1)
@click.option("--timeout", type=float, default=None, help="seconds to wait for the answer")
@click.option("--oneshot", is_flag=True, help="send without waiting for an answer")
def call(endpoint: str, method: str, args: tuple[str, ...], timeout: float | None,
         oneshot: bool) -> None:
    """Call ENDPOINT.METHOD with ARGS (each parsed as JSON when it is JSON) and print JSON."""
    from workers.agent.client import Collector, RpcError

    settings = load_settings()
    with Collector(settings.broker_url, settings.result_backend,
                   timeout=timeout or settings.rpc_timeout) as client:
        values = [_parse_arg(a) for a in args]
        if oneshot:
            click.echo(client.cast(endpoint, method, *values))
            return
        try:
            answer = client.call(endpoint, method, *values, timeout=timeout)
        except RpcError as exc:
            click.echo(json.dumps({"error_type": exc.error_type, "message": exc.message}),
                       err=True)
            sys.exit(1)
    click.echo(json.dumps(answer, indent=2, sort_keys=True, default=str))


@main.command()
@click.option("--role", "roles", multiple=True, help="roles to check (default: every RPC role)")
@click.option("--timeout", type=float, default=5.0, show_default=True)
def health(roles: tuple[str, ...], timeout: float) -> None:
    """Ping each endpoint through its queue: proves a worker is consuming, not just alive."""
    from collector import wire
    from workers.agent.client import Collector, RpcError

    settings = load_settings()
    failed = 0
    with Collector(settings.broker_url, settings.result_backend) as client:
        for endpoint in roles or wire.RPC_ENDPOINTS:
            try:
                answer = client.call(endpoint, wire.PING, timeout=timeout)
                click.echo(f"ok    {endpoint:20} {answer['host']}")
            except RpcError as exc:
                failed += 1
                click.echo(f"FAIL  {endpoint:20} {exc}")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--exit", "exit_at_end", is_flag=True,
              help="stop everything when the demo ends (default: keep running until Ctrl-C)")
def demo(exit_at_end: bool) -> None:
    """A whole datacenter on one command: the Collector places and runs instances."""
    from workers.demo.run import run_demo

    sys.exit(run_demo(exit_at_end=exit_at_end))


@main.group()
def docs() -> None:
    """Documents generated from the code."""


@docs.command("reference")
@click.option("--check", is_flag=True, help="only check; exit 1 when the file is stale")
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the reference to rewrite (default: docs/reference.md of this source tree)")
def docs_reference(check: bool, path: Path | None) -> None:
    """Regenerate the endpoint and error tables of docs/reference.md from the registry."""
    from tasks import reference_doc

    path = path or reference_doc.REFERENCE_PATH
    shown = os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    if not path.is_file():
        raise click.ClickException(f"no reference at {shown} (give --path)")
    try:
        if check:
            if not reference_doc.is_current(path):
                click.echo(f"{shown} is stale: run `collector docs reference`", err=True)
                sys.exit(1)
            return
        changed = reference_doc.rewrite(path)
    except ValueError as exc:
        raise click.ClickException(f"{shown}: {exc}") from None
    click.echo(f"{shown} {'regenerated' if changed else 'already current'}")


def _attach_subcommands() -> None:
    from workers.cli.credentials import credentials_group
    from workers.cli.dead_letters import dead_letters
    from workers.cli.groups import group
    from workers.cli.hosts import host
    from workers.cli.instances import instance, volume
    from workers.cli.jobs import jobs
    from workers.cli.ops import nodes, seed, stats

    main.add_command(jobs)
    main.add_command(nodes)
    main.add_command(seed)
    main.add_command(stats)
    main.add_command(instance)
    main.add_command(volume)
    main.add_command(host)
    main.add_command(dead_letters)
    main.add_command(group)
    main.add_command(credentials_group)


_attach_subcommands()
