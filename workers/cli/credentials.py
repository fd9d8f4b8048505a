"""``collector credentials ...``: a node's own identity (``workers.node_credentials``).

    collector credentials issue hva.demo1     # prints the agent's environment, KEY=VALUE
    collector credentials revoke hva.demo1    # its messages refused, its connections closed
    collector credentials list
"""

from __future__ import annotations

import click

from collector.config import SettingsError
from collector.db import unit_of_work
from collector.errors import CollectorError
from collector.services import credentials
from workers.node_credentials import issue_node, revoke_node


@click.group("credentials")
def credentials_group() -> None:
    """Node identities: a signing key and a broker user of its own for each node."""


@credentials_group.command("issue")
@click.argument("node_id")
def issue_command(node_id: str) -> None:
    """Give NODE_ID (hva.<name>, sta.<name>, natbox.<name>) a new key and broker user, and
    print its agent's environment as KEY=VALUE lines (the previous key stops working)."""
    try:
        env = issue_node(node_id)
    except (CollectorError, SettingsError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    for line in env.lines():
        click.echo(line)


@credentials_group.command("revoke")
@click.argument("node_id")
def revoke_command(node_id: str) -> None:
    """End NODE_ID's key and broker user: its next message is refused, its connections
    are closed."""
    try:
        revoke_node(node_id)
    except CollectorError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(f"{node_id}: revoked")


@credentials_group.command("list")
def list_() -> None:
    """Every node credential: node, key generation, broker user, issued, revoked."""
    with unit_of_work(readonly=True) as session:
        rows = credentials.list_credentials(session)
    for row in rows:
        click.echo(f"{row['node_id']}\tkey {row['generation']}\t{row['broker_user']}\t"
                   f"issued {row['issued_at']}\t"
                   f"{'revoked ' + str(row['revoked_at']) if row['revoked_at'] else 'valid'}")
