"""Node credentials: issue a node its own signing key and broker user, revoke them, and
say which key of a node is valid now.

The key itself is derived from the Collector's signing secret and the generation
(``collector.signing``); the broker user is made by the caller (``workers.broker_acl``),
which knows the broker. A node's messages are refused from the moment its row is revoked
or re-issued (the task layer reads ``valid_generation`` at most a second old).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.errors import InvalidArgument, UnknownNodeID
from collector.models import NodeCredential
from collector.signing import Credential, node_kind, valid_principal
from collector.timeutil import utcnow


def broker_user(node_id: str) -> str:
    """The node's own Redis user: ``node.hva.demo1``."""
    return f"node.{node_id}"


@dataclass(frozen=True)
class Issued:
    """What ``issue`` made: the node's credential and its broker user."""

    credential: Credential
    broker_user: str


def _checked_node_id(node_id: object) -> str:
    if not isinstance(node_id, str) or node_kind(node_id) is None or \
            not valid_principal(node_id):
        raise InvalidArgument(f"{node_id!r} is not a node id (hva.<name>, sta.<name> or "
                              "natbox.<name>)")
    return node_id


def issue(session: Session, secret: str, node_id: str) -> Issued:
    """A new key for ``node_id`` (the one before, if any, stops working now)."""
    node_id = _checked_node_id(node_id)
    row = session.scalars(select(NodeCredential).where(NodeCredential.node_id == node_id)
                          .with_for_update()).first()
    now = utcnow()
    if row is None:
        row = NodeCredential(node_id=node_id, generation=1, broker_user=broker_user(node_id),
                             issued_at=now)
        session.add(row)
    else:
        row.generation += 1
        row.issued_at, row.revoked_at = now, None
    session.flush()
    return Issued(Credential.from_secret(secret, node_id, row.generation), row.broker_user)


def revoke(session: Session, node_id: str) -> str:
    """End ``node_id``'s key; its broker user (returned) is for the caller to delete."""
    node_id = _checked_node_id(node_id)
    row = session.scalars(select(NodeCredential).where(NodeCredential.node_id == node_id)
                          .with_for_update()).first()
    if row is None:
        raise UnknownNodeID(f"no credentials were issued to {node_id}")
    row.revoked_at = row.revoked_at or utcnow()
    return row.broker_user


def valid_generation(session: Session, node_id: str) -> int | None:
    """The generation of ``node_id``'s valid key; None when none was issued or it was
    revoked."""
    row = session.execute(select(NodeCredential.generation, NodeCredential.revoked_at)
                          .where(NodeCredential.node_id == node_id)).first()
    return None if row is None or row.revoked_at is not None else row.generation


def list_credentials(session: Session) -> list[dict[str, object]]:
    """Every node credential: node, generation, broker user, issued, revoked."""
    rows = session.scalars(select(NodeCredential).order_by(NodeCredential.node_id))
    return [{"node_id": r.node_id, "generation": r.generation, "broker_user": r.broker_user,
             "issued_at": r.issued_at.isoformat(), "revoked_at":
             r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]
