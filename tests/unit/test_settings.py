"""Settings from the environment: unusable values are refused, naming the variable."""

import pytest
from click.testing import CliRunner

from collector.cli import main
from collector.client import make_app
from collector.config import SettingsError, load_settings


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://localhost/0", "redis://:s3cret@10.0.0.5:6379/0",
    "rediss://user:s3cret@broker.example.net:6380/0", "redis+socket:///run/redis.sock",
])
def test_brokers_on_this_machine_or_with_a_password_are_accepted(monkeypatch, url):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", url)
    assert load_settings().broker_url == url


def test_a_broker_beyond_localhost_without_a_password_is_refused(monkeypatch):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://10.0.0.5:6379/0")
    with pytest.raises(SettingsError, match="COLLECTOR_BROKER_URL reaches 10.0.0.5"):
        load_settings()
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("COLLECTOR_RESULT_BACKEND", "redis://cache.example.net/1")
    with pytest.raises(SettingsError, match="COLLECTOR_RESULT_BACKEND"):
        load_settings()


def test_an_agent_client_refuses_an_unauthenticated_remote_broker(monkeypatch):
    monkeypatch.delenv("COLLECTOR_BROKER_URL", raising=False)
    with pytest.raises(SettingsError, match="broker_url reaches hva-gw.example.net"):
        make_app("redis://hva-gw.example.net:6379/0")


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_numbers_that_are_not_positive_numbers_are_refused(monkeypatch, value):
    monkeypatch.setenv("COLLECTOR_RPC_TIMEOUT", value)
    with pytest.raises(SettingsError, match="COLLECTOR_RPC_TIMEOUT"):
        load_settings()


def test_the_cli_reports_a_bad_setting_in_one_line(monkeypatch):
    monkeypatch.setenv("COLLECTOR_NODE_TIMEOUT_SEC", "twenty")
    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: COLLECTOR_NODE_TIMEOUT_SEC='twenty' is not an integer"


def test_sqlite_commits_are_durable_unless_told_otherwise(monkeypatch, tmp_path):
    from sqlalchemy import text

    from collector.db import dispose_engines, unit_of_work
    from collector.migrate import upgrade

    monkeypatch.delenv("COLLECTOR_SQLITE_SYNCHRONOUS", raising=False)
    assert load_settings().sqlite_synchronous == "full"
    url = f"sqlite:///{tmp_path / 'sync.sqlite3'}"
    upgrade(url)
    for setting, pragma in (("full", 2), ("NORMAL", 1)):
        monkeypatch.setenv("COLLECTOR_SQLITE_SYNCHRONOUS", setting)
        dispose_engines()
        with unit_of_work(url) as session:
            assert session.execute(text("PRAGMA synchronous")).scalar() == pragma
    dispose_engines()
    monkeypatch.setenv("COLLECTOR_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(SettingsError, match="COLLECTOR_SQLITE_SYNCHRONOUS='off' is not one of"):
        load_settings()
