"""Migrated SQLite databases without running Alembic for each one.

``make_template(path)`` runs ``collector.db.migrate.upgrade`` once, exactly as ``collector db
upgrade`` does, into ``path``; ``copy_of(template, dest)`` then gives a test its own file, a
byte copy of that migrated database (schema, ``alembic_version`` and all), in about a
millisecond instead of a full migration run. conftest builds the template once per session
(fixtures ``migrated_sqlite_template`` and ``migrated_sqlite``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["copy_of", "make_template", "sqlite_url"]


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{path}"


def _side_files(path: Path) -> list[Path]:
    """SQLite's journal files next to ``path`` that hold pages not yet in the file itself."""
    return [side for suffix in ("-wal", "-journal")
            if (side := path.with_name(path.name + suffix)).exists() and side.stat().st_size]


def make_template(path: Path) -> Path:
    """A database at ``path`` migrated to head by ``upgrade``; returns ``path``."""
    from collector.db.migrate import upgrade

    upgrade(sqlite_url(path))  # its engine is disposed: the WAL is checkpointed and gone
    leftovers = _side_files(path)
    if leftovers:  # a copy of the main file alone would miss what they hold
        raise RuntimeError(f"the migrated template left {leftovers}: still in use?")
    return path


def copy_of(template: Path, dest: Path) -> str:
    """A fresh copy of the migrated ``template`` at ``dest``; returns its SQLAlchemy URL."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    return sqlite_url(dest)
