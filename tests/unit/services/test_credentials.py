"""Node credentials (``collector.services.credentials``): issuing, re-issuing and revoking
a node's key, with a session alone."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from collector.errors import InvalidArgument, UnknownNodeID
from collector.models import NodeCredential
from collector.services import credentials
from collector.signing import derive_key

SECRET = "the-collectors-signing-secret"


def _rows(session) -> int:
    return session.scalar(select(func.count()).select_from(NodeCredential))


def test_issue_gives_generation_1_then_2_each_with_its_own_key(session):
    first = credentials.issue(session, SECRET, "hva.a")
    assert (first.credential.principal, first.credential.generation) == ("hva.a", 1)
    assert first.credential.key == derive_key(SECRET, "hva.a", 1)
    assert first.broker_user == "node.hva.a"
    assert credentials.valid_generation(session, "hva.a") == 1

    second = credentials.issue(session, SECRET, "hva.a")
    assert second.credential.generation == 2
    assert second.credential.key == derive_key(SECRET, "hva.a", 2)
    assert second.credential.key != first.credential.key
    assert second.broker_user == first.broker_user
    assert credentials.valid_generation(session, "hva.a") == 2  # key 1 stopped working
    assert session.scalar(select(func.count()).select_from(NodeCredential)
                          .where(NodeCredential.node_id == "hva.a")) == 1


def test_issue_is_per_node(session):
    a = credentials.issue(session, SECRET, "hva.a")
    s = credentials.issue(session, SECRET, "sta.s")
    assert (a.credential.generation, s.credential.generation) == (1, 1)
    assert a.credential.key != s.credential.key
    assert credentials.valid_generation(session, "natbox.n") is None  # never issued
    listed = {row["node_id"]: row for row in credentials.list_credentials(session)}
    assert listed["hva.a"]["generation"] == 1 and listed["hva.a"]["revoked_at"] is None
    assert listed["sta.s"]["broker_user"] == "node.sta.s"


def test_revoke_ends_the_key_and_reissue_makes_a_new_valid_one(session):
    credentials.issue(session, SECRET, "sta.s")
    assert credentials.revoke(session, "sta.s") == "node.sta.s"
    assert credentials.valid_generation(session, "sta.s") is None
    listed = {row["node_id"]: row for row in credentials.list_credentials(session)}
    assert listed["sta.s"]["revoked_at"] is not None
    assert credentials.revoke(session, "sta.s") == "node.sta.s"  # again: still revoked
    assert credentials.valid_generation(session, "sta.s") is None

    again = credentials.issue(session, SECRET, "sta.s")
    assert again.credential.generation == 2  # never the revoked key back
    assert credentials.valid_generation(session, "sta.s") == 2
    listed = {row["node_id"]: row for row in credentials.list_credentials(session)}
    assert listed["sta.s"]["revoked_at"] is None


@pytest.mark.parametrize("node_id", [
    "api", "operator", "collector", "hva.", "hva", ".a", "bksta.b1", 123, None,
    "hva.a b", "hva.a/b", "hva.a\n", "hva." + "x" * 80,
], ids=lambda value: repr(value))
def test_a_bad_node_id_is_refused_and_writes_nothing(session, node_id):
    before = _rows(session)
    with pytest.raises(InvalidArgument):
        credentials.issue(session, SECRET, node_id)
    assert _rows(session) == before
    with pytest.raises(InvalidArgument):
        credentials.revoke(session, node_id)


def test_revoking_a_node_never_issued_is_an_unknown_node(session):
    credentials.issue(session, SECRET, "hva.a")
    with pytest.raises(UnknownNodeID):
        credentials.revoke(session, "hva.b")
    assert credentials.valid_generation(session, "hva.a") == 1  # the others untouched
