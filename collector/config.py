"""Settings from the environment, read in one place.

Every process (worker, beat, CLI, tests) reads its configuration here and nowhere else.
Credentials come only from the environment: nothing secret is written in a file we ship.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Hosts a broker may be reached on without a password: this machine only.
LOCAL_HOSTS = frozenset({"localhost", "::1"})


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


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_env(name, default) or default).lower()
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def authenticated_beyond_localhost(name: str, url: str | None) -> str | None:
    """A broker URL reaching beyond this machine must carry a password."""
    if not url:
        return url
    parts = urlsplit(url)
    if "socket" in parts.scheme:
        return url  # a unix socket: local by construction
    host = parts.hostname or "localhost"
    if host in LOCAL_HOSTS or host.startswith("127.") or parts.password:
        return url
    raise SettingsError(f"{name} reaches {host} without a password: a broker beyond localhost "
                        f"must require one ({parts.scheme}://:password@{host}:port/...)")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    result_backend: str | None
    rpc_timeout: float = 30.0
    result_expires: int = 3600
    job_expires: int = 86400
    visibility_timeout: int = 6 * 3600
    outbox_sweep_after: float = 5.0
    node_timeout_sec: int = 20
    node_offline_sec: int = 40
    node_kill_sec: int = 320
    job_max_deliveries: int = 3
    job_heartbeat_timeout: int = 60
    resource_retention: int = 7 * 86400
    worker_concurrency: int | None = None  # None: the role's own (workers.roles)
    sqlite_synchronous: str = "full"
    flower_basic_auth: str | None = None
    agent_job_heartbeat: float = 5.0
    beat_lock_timeout: int = 30
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
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        result_backend=authenticated_beyond_localhost(
            "COLLECTOR_RESULT_BACKEND", _env("COLLECTOR_RESULT_BACKEND", broker_url)),
        rpc_timeout=_number("COLLECTOR_RPC_TIMEOUT", 30, float),
        result_expires=_number("COLLECTOR_RESULT_EXPIRES", 3600),
        job_expires=_number("COLLECTOR_JOB_EXPIRES", 86400),
        visibility_timeout=_number("COLLECTOR_VISIBILITY_TIMEOUT", 6 * 3600),
        outbox_sweep_after=_number("COLLECTOR_OUTBOX_SWEEP_AFTER", 5, float),
        node_timeout_sec=_number("COLLECTOR_NODE_TIMEOUT_SEC", 20),
        node_offline_sec=_number("COLLECTOR_NODE_OFFLINE_SEC", 40),
        node_kill_sec=_number("COLLECTOR_NODE_KILL_SEC", 320),
        job_max_deliveries=_number("COLLECTOR_JOB_MAX_DELIVERIES", 3),
        job_heartbeat_timeout=_number("COLLECTOR_JOB_HEARTBEAT_TIMEOUT", 60),
        resource_retention=_number("COLLECTOR_RESOURCE_RETENTION", 7 * 86400),
        worker_concurrency=_number("COLLECTOR_WORKER_CONCURRENCY", 4)
        if _env("COLLECTOR_WORKER_CONCURRENCY") else None,
        sqlite_synchronous=_choice("COLLECTOR_SQLITE_SYNCHRONOUS", "full", ("full", "normal")),
        flower_basic_auth=_env("COLLECTOR_FLOWER_BASIC_AUTH"),
        agent_job_heartbeat=_number("COLLECTOR_AGENT_JOB_HEARTBEAT", 5, float),
        beat_lock_timeout=_number("COLLECTOR_BEAT_LOCK_TIMEOUT", 30),
    )
