"""``collector dead-letters``: messages the Collector gave up on, for operators."""

from __future__ import annotations

import json
import sys

import click

from collector.config import load_settings


@click.group("dead-letters")
def dead_letters() -> None:
    """List and replay parked messages (handlers that kept failing, unpublishable rows)."""


@dead_letters.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="include replayed letters")
@click.option("--limit", "-n", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON document per line")
def list_letters(include_replayed: bool, limit: int, as_json: bool) -> None:
    """Oldest first; by default only letters not replayed yet."""
    from collector.db import unit_of_work
    from collector.services import dead_letters as letters

    with unit_of_work(load_settings().database_url, readonly=True) as session:
        rows = letters.list_dead_letters(session, include_replayed, limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True, default=str))
        return
    click.echo(f"{'ID':>6} {'SOURCE':6} {'TRIES':>5} {'REPLAYS':>7} {'TASK':44} "
               f"{'CREATED':24} ERROR")
    for r in rows:
        click.echo(f"{r['id']:>6} {r['source']:6} {r['attempts']:>5} {r['replay_count']:>7} "
                   f"{r['task_name'][:44]:44} {r['created_at']:24} "
                   f"{r['error_type']}: {r['error'][:80]}")


@dead_letters.command("replay")
@click.argument("dead_letter_id", type=int, required=False)
def replay(dead_letter_id: int | None) -> None:
    """Send letter DEAD_LETTER_ID again, or every letter not replayed yet.

    The message goes through the outbox: the outbox sweep (beat) publishes it within
    seconds. A replay that fails again is parked again as a new letter.
    """
    from collector.db import unit_of_work
    from collector.errors import CollectorError
    from collector.services import dead_letters as letters

    try:
        with unit_of_work(load_settings().database_url) as session:
            if dead_letter_id is None:
                replayed = letters.replay_pending(session)
            else:
                replayed = [letters.replay(session, dead_letter_id)["id"]]
    except CollectorError as exc:
        click.echo(f"{exc.error_type}: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"replayed {len(replayed)}: {' '.join(str(i) for i in replayed) or '-'}")
