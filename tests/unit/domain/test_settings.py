"""Settings from the environment: unusable values are refused, naming the variable."""

import pytest
from click.testing import CliRunner

from collector.config import SettingsError, load_settings
from workers.agent.client import make_app
from workers.cli.main import main


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


def test_an_event_retry_longer_than_half_the_visibility_timeout_is_refused(monkeypatch):
    monkeypatch.setenv("COLLECTOR_VISIBILITY_TIMEOUT", "30")
    monkeypatch.setenv("COLLECTOR_EVENT_RETRY_BACKOFF_MAX", "20")
    with pytest.raises(SettingsError, match="COLLECTOR_EVENT_RETRY_BACKOFF_MAX=20"):
        load_settings()


def test_visibility_timeouts_per_kind_of_work(monkeypatch):
    """The Collector: short, in its own hash; an agent: twice its longest job, per node."""
    import celeryconfig
    from workers.agent.base import Agent
    from workers.agent.client import Collector

    options = celeryconfig.broker_transport_options
    assert options["visibility_timeout"] == load_settings().visibility_timeout == 60
    assert options["unacked_key"] == "collector.unacked"
    agent = Agent("hva.vis1", "redis://127.0.0.1:1/0", longest_job=1800)
    agent_options = agent.app.conf.broker_transport_options
    assert agent_options["visibility_timeout"] == 3600
    assert agent_options["unacked_key"] == "unacked.hva.vis1"
    assert Agent("hva.vis2", "redis://127.0.0.1:1/0").transport_options()[
        "visibility_timeout"] == 2 * 3 * 3600
    client = Collector("redis://127.0.0.1:1/0", timeout=600)
    assert client.visibility_timeout == 60  # a call's message expires after 60 s at most


@pytest.mark.parametrize("url", [
    "redis://127.0.0.5:6379/0", "redis://[::1]:6379/0", "redis://LOCALHOST/3",
    "redis://127.0.0.1:6379/0;redis://localhost:6380/0",  # a failover list, all local
    "redis://127.0.0.1/0;redis://:pw@broker.example.net/0",  # remote member with a password
    "redis://127.0.0.1:6379",  # no database number
])
def test_loopback_brokers_and_authenticated_failover_lists_are_accepted(monkeypatch, url):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", url)
    monkeypatch.delenv("COLLECTOR_RESULT_BACKEND", raising=False)
    settings = load_settings()
    assert settings.broker_url == url
    assert settings.result_backend == url.split(";")[0]  # the backend is one URL


@pytest.mark.parametrize("url, host", [
    ("redis://127.evil.example:6379/0", "127.evil.example"),  # a DNS name, not a loopback
    ("redis://127.0.0.1.evil.example/0", "127.0.0.1.evil.example"),
    ("redis://localhost.evil.example/0", "localhost.evil.example"),
    ("redis://128.0.0.1/0", "128.0.0.1"),
    ("redis://[::2]/0", "::2"),
    ("redis://127.0.0.1:6379/0;redis://10.1.2.3:6379/0", "10.1.2.3"),  # second member
    ("redis://localhost/0; redis://broker.example.net/0", "broker.example.net"),
])
def test_remote_hosts_without_a_password_are_refused_even_disguised(monkeypatch, url, host):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", url)
    with pytest.raises(SettingsError, match=f"COLLECTOR_BROKER_URL reaches {host} without"):
        load_settings()


@pytest.mark.parametrize("name, value, fragment", [
    ("COLLECTOR_RESULT_BACKEND", "redis://127.0.0.1:6379/abc", "database number 'abc'"),
    ("COLLECTOR_RESULT_BACKEND", "redis://127.0.0.1:6379/-1", "database number '-1'"),
    ("COLLECTOR_BROKER_URL", "redis://127.0.0.1:6379/0x1", "database number '0x1'"),
    ("COLLECTOR_BROKER_URL", "redis://127.0.0.1:port/0", "not a valid URL"),
    ("COLLECTOR_BROKER_URL", "redis://:s3cret@[::1/0", "not a valid URL"),
    ("COLLECTOR_BROKER_URL", "127.0.0.1:6379", "not a URL"),
    ("COLLECTOR_BROKER_URL", "redis://127.0.0.1/0;;redis://127.0.0.1/1", "empty URL"),
    ("COLLECTOR_RESULT_BACKEND", "redis://127.0.0.1/1;redis://127.0.0.1/2", "one URL"),
])
def test_malformed_broker_and_backend_urls_are_one_line_errors(monkeypatch, name, value,
                                                                fragment):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(name) and fragment in message and "\n" not in message
    assert "s3cret" not in message


def test_an_unknown_role_is_a_one_line_error():
    result = CliRunner().invoke(main, ["worker", "--role", "nosuchrole"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "--role: unknown role 'nosuchrole'" in result.output


@pytest.mark.parametrize("argv, env", [
    (["worker", "--role", "nosuchrole"], {}),
    (["worker", "--role", "hva-collector"],
     {"COLLECTOR_BROKER_URL": "redis://127.evil.example:6379/0"}),
    (["worker", "--role", "all"], {"COLLECTOR_RESULT_BACKEND": "redis://127.0.0.1:6379/x"}),
    (["beat"], {"COLLECTOR_BROKER_URL": "redis://127.0.0.1/0;redis://10.9.9.9/0"}),
    (["flower"], {"COLLECTOR_BROKER_URL": "redis://127.0.0.1:port/0"}),
])
def test_a_failed_start_is_one_line_on_stderr_and_a_non_zero_exit(tmp_path, argv, env):
    import os
    import subprocess
    import sys

    environment = {**os.environ, "COLLECTOR_BROKER_URL": "redis://127.0.0.1:1/0",
                   "COLLECTOR_DATA_DIR": str(tmp_path), **env}
    if "COLLECTOR_RESULT_BACKEND" not in env:
        environment.pop("COLLECTOR_RESULT_BACKEND", None)
    done = subprocess.run([sys.executable, "-m", "workers.cli", *argv], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: ")


def test_sqlite_commits_are_durable_unless_told_otherwise(monkeypatch, migrated_sqlite):
    from sqlalchemy import text

    from collector.db import dispose_engines, unit_of_work

    monkeypatch.delenv("COLLECTOR_SQLITE_SYNCHRONOUS", raising=False)
    assert load_settings().sqlite_synchronous == "full"
    url = migrated_sqlite("sync.sqlite3")
    for setting, pragma in (("full", 2), ("NORMAL", 1)):
        monkeypatch.setenv("COLLECTOR_SQLITE_SYNCHRONOUS", setting)
        dispose_engines()
        with unit_of_work(url) as session:
            assert session.execute(text("PRAGMA synchronous")).scalar() == pragma
    dispose_engines()
    monkeypatch.setenv("COLLECTOR_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(SettingsError, match="COLLECTOR_SQLITE_SYNCHRONOUS='off' is not one of"):
        load_settings()


@pytest.mark.parametrize("argv", [["worker", "--role", "api"], ["beat"]])
def test_a_collector_process_without_a_signing_secret_does_not_start(argv, monkeypatch,
                                                                      tmp_path):
    """Without the secret it could sign nothing and every message would be refused: it says
    which variable to set, in one line, and starts nothing."""
    monkeypatch.delenv("COLLECTOR_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("COLLECTOR_DATA_DIR", str(tmp_path))  # no secret kept there either
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert "set COLLECTOR_SIGNING_SECRET" in result.output
    (tmp_path / "signing-secret").write_text("kept-by-collector-up\n")
    from collector.config import load_settings

    assert load_settings().signing_secret == "kept-by-collector-up"
