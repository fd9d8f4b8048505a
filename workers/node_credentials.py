"""A node's own identity: its signing key (``collector.services.credentials``) and its
broker user (``workers.broker_acl``), issued and revoked together, and the environment its
agent runs with. ``collector credentials ...`` (workers/cli/credentials.py), the demo and the
tests issue through here.

It runs as the operator: with the Collector's database and signing secret
(COLLECTOR_SIGNING_SECRET) and a broker user that may manage ACLs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel

from collector.config import (
    Settings,
    SettingsError,
    first_url,
    is_sentinel,
    load_settings,
    redis_password,
    sentinel_hosts,
    sentinel_kwargs,
)
from collector.db import unit_of_work
from collector.services import credentials
from workers import broker_acl
from workers.agent.client import EVENTS_QUEUE, make_app, redis_client


@dataclass(frozen=True)
class NodeEnvironment:
    """What a node's agent is started with (``collector credentials issue`` prints it)."""

    node_id: str
    node_key: str
    broker_url: str
    result_backend: str

    def lines(self) -> list[str]:
        return [f"COLLECTOR_NODE_ID={self.node_id}", f"COLLECTOR_NODE_KEY={self.node_key}",
                f"COLLECTOR_BROKER_URL={self.broker_url}",
                f"COLLECTOR_RESULT_BACKEND={self.result_backend}"]

    def environ(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.lines())


def _servers(settings: Settings) -> list[str]:
    """The broker, and the result backend when it is another server."""
    urls = [settings.broker_url or ""]
    backend = settings.result_backend or ""
    if backend and _server(backend) != _server(urls[0]):
        urls.append(backend)
    return urls


def _server(url: str) -> str:
    parts = urlsplit(url.split(";")[0])
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


def acl_clients(url: str, settings: Settings) -> list[redis.Redis]:
    """A client of every server whose users ``url`` reaches: the server itself, or, for a
    Sentinel list, the master and each replica (ACL changes are not replicated, and a
    replica promoted by a failover must know the node's user)."""
    if not is_sentinel(url):
        return [redis_client(url, settings)]
    sentinels = redis.sentinel.Sentinel(sentinel_hosts(url),
                                        sentinel_kwargs=sentinel_kwargs(settings))
    master = settings.redis_master_name or ""
    username = urlsplit(first_url(url) or "").username
    return [redis.Redis(host=host, port=port, password=redis_password(url),
                        username=unquote(username) if username else None,
                        socket_timeout=5, socket_connect_timeout=5)
            for host, port in [sentinels.discover_master(master),
                               *sentinels.discover_slaves(master)]]


def issue_node(node_id: str, settings: Settings | None = None) -> NodeEnvironment:
    """A new signing key and broker user for ``node_id`` (the previous ones end)."""
    settings = settings or load_settings()
    if not settings.signing_secret:
        raise SettingsError("no signing secret: set COLLECTOR_SIGNING_SECRET (or run where "
                            "`collector up` keeps it)")
    if not settings.broker_url:
        raise SettingsError("no broker: set COLLECTOR_BROKER_URL")
    user, password = credentials.broker_user(node_id), secrets.token_urlsafe(24)
    with unit_of_work(settings.database_url) as session:  # node id checked before any user
        issued = credentials.issue(session, settings.signing_secret, node_id)
        for url in _servers(settings):
            for client in acl_clients(url, settings):
                broker_acl.set_user(client, user, broker_acl.node_rules(
                    node_id, password, broker_acl.has_selectors(client)))
    declare_events_queue(settings)
    return NodeEnvironment(
        node_id, issued.credential.node_key(),
        broker_acl.node_user_url(settings.broker_url, user, password),
        broker_acl.node_user_url(settings.result_backend or settings.broker_url, user,
                                 password))


def agent_environment(node_id: str, env: Mapping[str, str]) -> dict[str, str]:
    """What changes in a Collector installation's environment ``env`` for the agent of
    ``node_id``: its own key and broker user (issued now), and no signing secret (the empty
    value unsets it). ``env`` names the database, the broker (the operator's user, when
    COLLECTOR_OPERATOR_BROKER_URL is set) and the signing secret."""
    settings = load_settings({
        **env, "COLLECTOR_BROKER_URL": env.get("COLLECTOR_OPERATOR_BROKER_URL") or
        env["COLLECTOR_BROKER_URL"], "COLLECTOR_RESULT_BACKEND":
        env.get("COLLECTOR_RESULT_BACKEND") or env["COLLECTOR_BROKER_URL"]})
    return {**issue_node(node_id, settings).environ(), "COLLECTOR_SIGNING_SECRET": "",
            "COLLECTOR_OPERATOR_BROKER_URL": "", "COLLECTOR_DATABASE_URL": ""}


def declare_events_queue(settings: Settings) -> None:
    """The events queue and its binding, declared by the operator: a node may not write
    bindings, so an event it publishes before any Collector worker started still lands in
    the queue."""
    app = make_app(settings.broker_url, settings.result_backend)
    try:
        with app.connection_for_write() as connection:
            EVENTS_QUEUE.bind(connection.default_channel).declare()
    finally:
        app.close()


def revoke_node(node_id: str, settings: Settings | None = None) -> None:
    """End ``node_id``'s key (its next message is refused) and delete its broker user
    (its open connections are closed)."""
    settings = settings or load_settings()
    with unit_of_work(settings.database_url) as session:
        user = credentials.revoke(session, node_id)
    for url in _servers(settings):
        for client in acl_clients(url, settings):
            broker_acl.delete_user(client, user)
