"""Redis ACL users: one per node, one for the Collector's roles, one for the operator.

A node's user (``node.<node id>``, ``collector.services.credentials.broker_user``) may:

- take messages from its own node queues only (``<endpoint>.<node id>``, every endpoint of
  ``wire.NODE_JOBS``, and their priority lists), and declare those queues;
- push, without reading them, onto the Collector's request queues and the events queue
  (Redis 7 key permissions ``%W~``);
- read the exchange bindings (``%R~_kombu.binding.*``), never write another's;
- keep its own unacknowledged messages (``unacked.<node id>``: the agent library's keys),
  and its own keys ``agent-<what>:<node id>`` (the reference agents' journals);
- store and read results (``celery-task-meta-*``, keys and channels), through GET, SET and
  SUBSCRIBE only: no KEYS, SCAN, PSUBSCRIBE, so another's result id cannot be learnt;
- run no administrative command: no FLUSHALL, CONFIG, ACL, KEYS, CLIENT KILL, DEBUG,
  MONITOR; no remote-control channel (``*.celery.pidbox``) and no task-event channel.

Redis before 7 has no read-only or write-only key permissions: there the Collector's queues
are granted in full (``~``), so a node could also take from them; the reference says so.
The Collector's user and the operator's may do everything. ACL changes are made on the
server given (the master): with replicas, apply them on each one too (``ACL SETUSER`` is
not replicated).
"""

from __future__ import annotations

import redis

from collector import wire

# What a node's processes (kombu consumer and producer, the result backend) send, and no
# more. Keys and channels further limit what each command reaches.
NODE_COMMANDS = (
    "+auth", "+hello", "+ping", "+select", "+echo", "+quit", "+client|setname",
    "+client|id", "+client|getname",
    "+brpop", "+lpush", "+rpush", "+rpop", "+llen", "+exists",
    "+hset", "+hget", "+hdel", "+zadd", "+zrem", "+zrange", "+zrevrangebyscore",
    "+zrangebyscore",
    # redis-py's lock (kombu's restore mutex) is Lua; the commands a script runs are
    # checked against the same rules.
    "+eval", "+evalsha", "+script|load", "+script|exists",
    "+set", "+get", "+mget", "+del", "+expire", "+pexpire", "+setex",
    "+multi", "+exec", "+discard", "+watch", "+unwatch",
    "+smembers", "+sadd", "+srem",
    "+publish", "+subscribe", "+unsubscribe",
)
# The queues a node pushes its calls and events onto.
REQUEST_QUEUES = (wire.HVA_COLLECTOR, wire.STA_COLLECTOR, wire.NATBOX_COLLECTOR,
                  wire.NODE_COLLECTOR, wire.ALARM_COLLECTOR, wire.RESOURCE_COLLECTOR,
                  wire.JOBQUEUE_PROXY, wire.EVENTS)
PRIORITY_SUFFIX = "\x06\x16*"  # kombu's priority lists: "<queue>\x06\x16<priority>"
RESULT_KEYS = "celery-task-meta-*"
# A node's own keys ``agent-<what>:<node id>`` (the reference agents' journal of jobs run,
# ``agent-log:``, and their record of copies refused, ``agent-copies:``); node ids hold no
# ":", so no node's pattern reaches another's keys.
OWN_KEYS = "agent-*:"


def node_queues(node_id: str) -> list[str]:
    """Every queue of the node, one per node endpoint."""
    return [wire.node_queue(endpoint, node_id) for endpoint in wire.NODE_JOBS]


def node_rules(node_id: str, password: str, selectors: bool = True) -> list[str]:
    """The ACL SETUSER rules of ``node_id``'s user (``selectors``: Redis 7 ``%R~``/``%W~``)."""
    own = [pattern for queue in node_queues(node_id)
           for pattern in (f"~{queue}", f"~{queue}{PRIORITY_SUFFIX}",
                           f"~_kombu.binding.{queue}", f"~_kombu.binding_permanent.{queue}")]
    unacked = f"unacked.{node_id}"
    write, read = ("%W~", "%R~") if selectors else ("~", "~")
    requests = [f"{write}{queue}{suffix}" for queue in REQUEST_QUEUES
                for suffix in ("", PRIORITY_SUFFIX)]
    return ["reset", "on", f">{password}", "-@all", *NODE_COMMANDS,
            *own, f"~{unacked}", f"~{unacked}.index", f"~{unacked}.mutex",
            f"~{OWN_KEYS}{node_id}",
            *requests, f"{read}_kombu.binding.*", f"~{RESULT_KEYS}",
            f"&{RESULT_KEYS}"]


def has_selectors(client: redis.Redis) -> bool:
    """Whether the server takes read-only and write-only key permissions (Redis 7+)."""
    version = str(client.info("server").get("redis_version", "0"))
    return int(version.split(".", 1)[0]) >= 7


def set_user(client: redis.Redis, user: str, rules: list[str]) -> None:
    """Create or replace ``user`` with ``rules``, kept across restarts when the server has
    an ACL file."""
    client.execute_command("ACL", "SETUSER", user, *rules)
    _save(client)


def delete_user(client: redis.Redis, user: str) -> bool:
    """Delete ``user``; Redis closes its open connections at once. Whether it existed."""
    deleted = bool(client.execute_command("ACL", "DELUSER", user))
    _save(client)
    return deleted


def _save(client: redis.Redis) -> None:
    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        pass  # no ACL file (users set in redis.conf or at run time): nothing to keep


def node_user_url(url: str, user: str, password: str) -> str:
    """``url`` (a broker URL, or a ``;`` list) with ``user:password`` instead of its own
    credentials."""
    from urllib.parse import quote, urlsplit, urlunsplit

    out = []
    for member in url.split(";"):
        parts = urlsplit(member.strip())
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + \
            (f":{parts.port}" if parts.port else "")
        out.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    return ";".join(out)
