"""Node liveness from heartbeats, on the database's clock."""

from datetime import timedelta

from collector.db import db_now
from collector.models import NodeState, OutboxMessage
from collector.services import node_states


def _events(session):
    return [m.routing_key.split(".", 1)[0] for m in session.query(OutboxMessage)
            .filter(OutboxMessage.kind == "event").order_by(OutboxMessage.id)]


def _row(session, node_id):
    return session.query(NodeState).filter_by(node_id=node_id).one_or_none()


def test_first_heartbeat_makes_the_node_online_and_monitored(session):
    before = len(_events(session))
    node_states.notify(session, "hva.live1", "abc12")
    assert _row(session, "hva.live1").state == "online"
    assert _events(session)[before:] == ["node_collector/monitored"]


def test_a_new_boot_token_is_noticed_as_a_restart(session):
    node_states.notify(session, "hva.live2", "abc12")
    node_states.notify(session, "hva.live2", "abc12")
    assert _events(session)[-1] == "node_collector/monitored"
    node_states.notify(session, "hva.live2", "fff99")
    assert _row(session, "hva.live2").boot_token == "fff99"
    assert _events(session)[-1] == "node_collector/restarted"


def test_silent_nodes_time_out_then_go_offline_then_are_forgotten(session):
    node_states.notify(session, "hva.quiet", "t1")
    row = _row(session, "hva.quiet")
    now = db_now(session)
    row.last_ping_at = now - timedelta(seconds=25)
    # Other tests' nodes may be silent too: look for this one only.
    assert "hva.quiet" in node_states.sweep_node_states(session)["timedout"]
    assert row.state == "timeout"
    assert "hva.quiet" not in node_states.sweep_node_states(session)["timedout"]  # no repeats
    row.last_ping_at = now - timedelta(seconds=45)
    assert "hva.quiet" in node_states.sweep_node_states(session)["offline"]
    row.last_ping_at = now - timedelta(seconds=400)
    assert "hva.quiet" in node_states.sweep_node_states(session)["killed"]
    assert _row(session, "hva.quiet") is None
    node_states.notify(session, "hva.quiet", "t2")  # it comes back: monitored again
    assert _row(session, "hva.quiet").state == "online"


def test_a_heartbeat_brings_a_timed_out_node_back_online(session):
    node_states.notify(session, "hva.back", "t1")
    row = _row(session, "hva.back")
    row.last_ping_at = db_now(session) - timedelta(seconds=30)
    node_states.sweep_node_states(session)
    assert row.state == "timeout"
    node_states.notify(session, "hva.back", "t1")
    assert row.state == "online"


def test_bad_node_id_is_invalid_argument(session):
    import pytest

    from collector.errors import InvalidArgument

    for bad in ("", "nodot", "hva.x" * 30):
        with pytest.raises(InvalidArgument):
            node_states.notify(session, bad, "t1")
