"""The settings of this worker process, read once (a worker's environment is fixed)."""

from __future__ import annotations

from collector.config import Settings, load_settings

_settings: Settings | None = None


def worker_settings() -> Settings:
    """The settings of this worker process, read once (a worker's environment is fixed)."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def forget_settings() -> None:
    """Read the settings again at the next call (after a fork, or in tests)."""
    global _settings
    _settings = None

