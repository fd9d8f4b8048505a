"""Settings from the environment, read in one place.

Every process (worker, beat, CLI, tests) reads its configuration here and nowhere else.
Credentials come only from the environment: nothing secret is written in a file we ship.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Hosts a broker may be reached on without a password: this machine only (the name
# ``localhost`` and loopback addresses, 127.0.0.0/8 and ::1; never a DNS name that merely
# starts with "127.").
LOCAL_NAMES = frozenset({"localhost"})
REDIS_SCHEMES = frozenset({"redis", "rediss"})


class SettingsError(ValueError):
    """A setting in the environment cannot be used; the message names the variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _number(name: str, default: float, kind: type = int) -> float:
    raw = _env(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}"
                            ) from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value


def is_local_host(host: str) -> bool:
    """``localhost``, or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name: it may resolve anywhere


def shown_url(url: str) -> str:
    """``url`` without its credentials, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{url.split('://', 1)[0]}://..."
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_url(name: str, url: str) -> str | None:
    """Why one broker / backend URL cannot be used, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{name}: {shown_url(url)} is not a valid URL ({exc})"
    if not parts.scheme:
        return f"{name}: {shown_url(url)} is not a URL (no scheme://)"
    if "socket" in parts.scheme:
        return None  # a unix socket: local by construction
    if parts.scheme in REDIS_SCHEMES:
        db = parts.path.strip("/")
        if db and not db.isdigit():
            return (f"{name}: {shown_url(url)}: the Redis database number {db!r} is not a "
                    "non-negative integer")
    host = host or "localhost"
    if is_local_host(host) or parts.password:
        return None
    return (f"{name} reaches {host} without a password: a broker beyond localhost must "
            f"require one ({parts.scheme}://:password@{host}:port/...)")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_env(name, default) or default).lower()
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def authenticated_beyond_localhost(name: str, url: str | None) -> str | None:
    """A broker URL reaching beyond this machine must carry a password; a failover list
    (``url1;url2``) is checked member by member. Anything unusable is a SettingsError
    naming the setting (never showing a password)."""
    if not url:
        return url
    for member in url.split(";"):
        problem = _check_url(name, member.strip()) if member.strip() else \
            f"{name}: an empty URL in the failover list"
        if problem:
            raise SettingsError(problem)
    return url


def single_url(name: str, url: str | None) -> str | None:
    """A result backend takes one URL: a failover list is a SettingsError."""
    if url and ";" in url:
        raise SettingsError(f"{name}: a result backend takes one URL, not a failover list")
    return url


def first_url(url: str | None) -> str | None:
    """The first URL of a failover list (the whole URL when it is not one)."""
    return url.split(";", 1)[0].strip() if url else url


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    result_backend: str | None
    rpc_timeout: float = 30.0
    result_expires: int = 3600
    job_expires: int = 86400
    visibility_timeout: int = 60
    outbox_sweep_after: float = 5.0
    node_timeout_sec: int = 20
    node_offline_sec: int = 40
    node_kill_sec: int = 320
    job_max_deliveries: int = 3
    job_heartbeat_timeout: int = 60
    resource_retention: int = 7 * 86400
    outbox_retention: int = 86400
    job_retention: int = 30 * 86400
    worker_concurrency: int | None = None  # None: the role's own (workers.roles)
    sqlite_synchronous: str = "full"
    flower_basic_auth: str | None = None
    agent_job_heartbeat: float = 5.0
    beat_lock_timeout: int = 30
    event_retries: int = 5
    outbox_max_attempts: int = 5
    event_retry_backoff_max: float = 30.0
    agent_longest_job: int = 3 * 3600
    fence_timeout_sec: int = 60
    # Convergence of placement requests (collector.scheduling.redrive, tasks.registry).
    job_retry_for: float = 600.0
    redrive_after: float = 30.0
    redrive_every: float = 15.0
    placement_max_jobs: int = 5
    extra: dict = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings() -> Settings:
    """Build the settings from the current environment (no caching: tests change it)."""
    data_dir = Path(_env("COLLECTOR_DATA_DIR", str(Path.cwd() / "var")))
    database_url = _env("COLLECTOR_DATABASE_URL", f"sqlite:///{data_dir / 'collector.sqlite3'}")
    broker_url = authenticated_beyond_localhost("COLLECTOR_BROKER_URL",
                                                 _env("COLLECTOR_BROKER_URL"))
    # The result backend defaults to the broker (its first URL, when it is a failover list).
    result_backend = single_url("COLLECTOR_RESULT_BACKEND", authenticated_beyond_localhost(
        "COLLECTOR_RESULT_BACKEND", _env("COLLECTOR_RESULT_BACKEND", first_url(broker_url))))
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        result_backend=result_backend,
        rpc_timeout=_number("COLLECTOR_RPC_TIMEOUT", 30, float),
        result_expires=_number("COLLECTOR_RESULT_EXPIRES", 3600),
        job_expires=_number("COLLECTOR_JOB_EXPIRES", 86400),
        visibility_timeout=_number("COLLECTOR_VISIBILITY_TIMEOUT", 60),
        outbox_sweep_after=_number("COLLECTOR_OUTBOX_SWEEP_AFTER", 5, float),
        node_timeout_sec=_number("COLLECTOR_NODE_TIMEOUT_SEC", 20),
        node_offline_sec=_number("COLLECTOR_NODE_OFFLINE_SEC", 40),
        node_kill_sec=_number("COLLECTOR_NODE_KILL_SEC", 320),
        job_max_deliveries=_number("COLLECTOR_JOB_MAX_DELIVERIES", 3),
        job_heartbeat_timeout=_number("COLLECTOR_JOB_HEARTBEAT_TIMEOUT", 60),
        resource_retention=_number("COLLECTOR_RESOURCE_RETENTION", 7 * 86400),
        outbox_retention=_number("COLLECTOR_OUTBOX_RETENTION", 86400),
        job_retention=_number("COLLECTOR_JOB_RETENTION", 30 * 86400),
        worker_concurrency=_number("COLLECTOR_WORKER_CONCURRENCY", 4)
        if _env("COLLECTOR_WORKER_CONCURRENCY") else None,
        sqlite_synchronous=_choice("COLLECTOR_SQLITE_SYNCHRONOUS", "full", ("full", "normal")),
        flower_basic_auth=_env("COLLECTOR_FLOWER_BASIC_AUTH"),
        agent_job_heartbeat=_number("COLLECTOR_AGENT_JOB_HEARTBEAT", 5, float),
        beat_lock_timeout=_number("COLLECTOR_BEAT_LOCK_TIMEOUT", 30),
        event_retries=_number("COLLECTOR_EVENT_RETRIES", 5),
        outbox_max_attempts=_number("COLLECTOR_OUTBOX_MAX_ATTEMPTS", 5),
        event_retry_backoff_max=_number("COLLECTOR_EVENT_RETRY_BACKOFF_MAX", 30, float),
        agent_longest_job=_number("COLLECTOR_AGENT_LONGEST_JOB", 3 * 3600),
        fence_timeout_sec=_number("COLLECTOR_FENCE_TIMEOUT_SEC", 60),
        # How long a scheduler job, a ledger callback or an agent's job handler is retried
        # through transient failures (the database or the broker out of reach).
        job_retry_for=_number("COLLECTOR_JOB_RETRY_FOR", 600, float),
        # A request left ``scheduling`` whose placement job ended this long ago (or that has
        # none) is placed again, and a ledger job whose outcome callback is this late is
        # finished from the result backend; the pass runs every ``redrive_every`` seconds.
        redrive_after=_number("COLLECTOR_REDRIVE_AFTER", 30, float),
        redrive_every=_number("COLLECTOR_REDRIVE_EVERY", 15, float),
        # Placement jobs of one request that may end without a placement before the request
        # is refused (``PlacementError``) instead of placed again.
        placement_max_jobs=_number("COLLECTOR_PLACEMENT_MAX_JOBS", 5),
    )
    if settings.event_retry_backoff_max * 2 > settings.visibility_timeout:
        # A retry waits in its worker, unacknowledged, for its countdown: longer than the
        # visibility timeout and it is redelivered while it waits, again and again.
        raise SettingsError(
            f"COLLECTOR_EVENT_RETRY_BACKOFF_MAX={settings.event_retry_backoff_max:g} must be "
            f"at most half of COLLECTOR_VISIBILITY_TIMEOUT={settings.visibility_timeout}")
    return settings
