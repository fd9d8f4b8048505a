"""Settings from the environment, read in one place.

Every process (worker, beat, CLI, tests) reads its configuration here and nowhere else.
Credentials come only from the environment: nothing secret is written in a file we ship.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


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
    worker_concurrency: int = 4
    flower_basic_auth: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings() -> Settings:
    """Build the settings from the current environment (no caching: tests change it)."""
    data_dir = Path(_env("COLLECTOR_DATA_DIR", str(Path.cwd() / "var")))
    database_url = _env("COLLECTOR_DATABASE_URL", f"sqlite:///{data_dir / 'collector.sqlite3'}")
    broker_url = _env("COLLECTOR_BROKER_URL")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        result_backend=_env("COLLECTOR_RESULT_BACKEND", broker_url),
        rpc_timeout=float(_env("COLLECTOR_RPC_TIMEOUT", "30")),
        result_expires=int(_env("COLLECTOR_RESULT_EXPIRES", "3600")),
        job_expires=int(_env("COLLECTOR_JOB_EXPIRES", "86400")),
        visibility_timeout=int(_env("COLLECTOR_VISIBILITY_TIMEOUT", str(6 * 3600))),
        outbox_sweep_after=float(_env("COLLECTOR_OUTBOX_SWEEP_AFTER", "5")),
        node_timeout_sec=int(_env("COLLECTOR_NODE_TIMEOUT_SEC", "20")),
        node_offline_sec=int(_env("COLLECTOR_NODE_OFFLINE_SEC", "40")),
        node_kill_sec=int(_env("COLLECTOR_NODE_KILL_SEC", "320")),
        job_max_deliveries=int(_env("COLLECTOR_JOB_MAX_DELIVERIES", "3")),
        job_heartbeat_timeout=int(_env("COLLECTOR_JOB_HEARTBEAT_TIMEOUT", "60")),
        resource_retention=int(_env("COLLECTOR_RESOURCE_RETENTION", str(7 * 86400))),
        worker_concurrency=int(_env("COLLECTOR_WORKER_CONCURRENCY", "4")),
        flower_basic_auth=_env("COLLECTOR_FLOWER_BASIC_AUTH"),
    )
