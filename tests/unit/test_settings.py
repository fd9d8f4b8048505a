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


def test_an_event_retry_longer_than_half_the_visibility_timeout_is_refused(monkeypatch):
    monkeypatch.setenv("COLLECTOR_VISIBILITY_TIMEOUT", "30")
    monkeypatch.setenv("COLLECTOR_EVENT_RETRY_BACKOFF_MAX", "20")
    with pytest.raises(SettingsError, match="COLLECTOR_EVENT_RETRY_BACKOFF_MAX=20"):
        load_settings()


def test_visibility_timeouts_per_kind_of_work(monkeypatch):
    """The Collector: short, in its own hash; an agent: twice its longest job, per node."""
    import celeryconfig
    from collector.agent import Agent
    from collector.client import Collector

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
