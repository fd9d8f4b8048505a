"""The `collector` command on an agent's install (no `server` extra): one line, no traceback."""

import sys

import click
import pytest
from click.testing import CliRunner

from workers.cli.main import _CollectorGroup, main


def test_a_server_command_without_the_server_extra_says_so_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "alembic", None)  # as if `collector[server]` were absent
    monkeypatch.delitem(sys.modules, "collector.db.migrate", raising=False)
    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: this command needs the server extra (no module 'alembic'): "
        "pip install 'collector[server]'"]


@pytest.mark.parametrize("missing", ["collector.nothere", "tasks.nothere", "workers.nothere"])
def test_a_missing_module_of_the_project_itself_is_not_blamed_on_the_extra(missing):
    @click.group(cls=_CollectorGroup)
    def cli() -> None:
        pass

    @cli.command()
    def broken() -> None:
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    result = CliRunner().invoke(cli, ["broken"])
    assert isinstance(result.exception, ModuleNotFoundError)
