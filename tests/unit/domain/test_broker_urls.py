"""Sentinel and TLS broker URLs from the environment become the options Celery, kombu,
the result backend, redbeat, Flower and the agent library need. No server: the clients are
built (by Celery's, kombu's and redbeat's own code) but never connect."""

from __future__ import annotations

import importlib.util
import ssl
import sys
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner

from collector.config import SettingsError, load_settings, redbeat_settings

ROOT = Path(__file__).resolve().parents[3]
SENTINELS = "sentinel://:m4ster@127.0.0.1:26379/3;sentinel://:m4ster@127.0.0.1:26380/3;" \
            "sentinel://:m4ster@127.0.0.1:26381/3"


def fresh_celeryconfig():
    """``celeryconfig`` evaluated anew under the current environment (the imported module
    keeps the environment of its first import)."""
    spec = importlib.util.spec_from_file_location("celeryconfig_under_test",
                                                  ROOT / "celeryconfig.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_of(config) -> Celery:
    app = Celery("under-test", set_as_current=False)
    app.config_from_object(config)
    return app


@pytest.fixture
def sentinel_env(monkeypatch):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", SENTINELS)
    monkeypatch.delenv("COLLECTOR_RESULT_BACKEND", raising=False)
    monkeypatch.setenv("COLLECTOR_REDIS_MASTER_NAME", "collector-main")
    monkeypatch.setenv("COLLECTOR_SENTINEL_PASSWORD", "s3ntinel")


@pytest.fixture
def tls_env(monkeypatch, tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("not read before a connection\n")
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "rediss://:pw@redis.example.net:6380/2")
    monkeypatch.delenv("COLLECTOR_RESULT_BACKEND", raising=False)
    monkeypatch.setenv("COLLECTOR_REDIS_CA_FILE", str(files["ca"]))
    monkeypatch.setenv("COLLECTOR_REDIS_CERT_FILE", str(files["cert"]))
    monkeypatch.setenv("COLLECTOR_REDIS_KEY_FILE", str(files["key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.mark.usefixtures("sentinel_env")
def test_a_sentinel_list_configures_the_broker_the_result_backend_and_beat():
    settings = load_settings()
    assert settings.result_backend == SENTINELS  # the whole list, as Celery documents it
    config = fresh_celeryconfig()
    assert config.broker_transport_options["master_name"] == "collector-main"
    assert config.broker_transport_options["sentinel_kwargs"]["password"] == "s3ntinel"
    assert config.broker_transport_options["unacked_key"] == "collector.unacked"  # kept
    assert config.result_backend_transport_options["master_name"] == "collector-main"
    assert config.broker_use_ssl is None and config.redis_backend_use_ssl is None

    app = app_of(config)
    backend = app.backend
    assert type(backend).__name__ == "SentinelBackend"
    assert [(h["host"], h["port"]) for h in backend.connparams["hosts"]] == [
        ("127.0.0.1", 26379), ("127.0.0.1", 26380), ("127.0.0.1", 26381)]
    assert backend.connparams["password"] == "m4ster" and backend.connparams["db"] == 3
    pool = backend._get_pool(**backend.connparams)  # builds, does not connect
    assert pool.service_name == "collector-main"
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs[
        "password"] == "s3ntinel"
    with app.connection_for_write() as conn:
        assert conn.transport_options["master_name"] == "collector-main"
        assert type(conn.transport).__name__ == "SentinelTransport"

    # celery-redbeat's own code builds its client from the settings.
    assert config.redbeat_redis_url == "redis-sentinel://127.0.0.1:26379/3"
    options = config.redbeat_redis_options
    assert options["sentinels"] == [("127.0.0.1", 26379), ("127.0.0.1", 26380),
                                    ("127.0.0.1", 26381)]
    assert (options["service_name"], options["password"], options["db"]) == (
        "collector-main", "m4ster", 3)
    from redbeat.schedulers import get_redis

    client = get_redis(app)
    assert client.connection_pool.service_name == "collector-main"
    assert client.connection_pool.connection_kwargs["password"] == "m4ster"
    assert client.connection_pool.connection_kwargs["db"] == 3


@pytest.mark.usefixtures("sentinel_env")
def test_the_agent_library_and_redis_clients_follow_the_sentinels():
    from workers.agent.base import Agent
    from workers.agent.client import make_app, redis_client

    app = make_app()
    assert app.conf.result_backend == SENTINELS
    assert app.conf.broker_transport_options["master_name"] == "collector-main"
    assert app.conf.result_backend_transport_options["master_name"] == "collector-main"
    assert app.conf.result_backend_transport_options["retry_policy"]["max_retries"] == 4
    assert type(app.backend).__name__ == "SentinelBackend"
    agent = Agent("hva.sentinel1", longest_job=600)
    options = agent.app.conf.broker_transport_options
    assert options["master_name"] == "collector-main"  # the node's own options added to it
    assert options["unacked_key"] == "unacked.hva.sentinel1"
    assert options["visibility_timeout"] == 1200

    client = redis_client()  # what reference agents use for their own keys
    pool = client.connection_pool
    assert pool.service_name == "collector-main"
    assert pool.connection_kwargs["password"] == "m4ster"
    assert pool.connection_kwargs["db"] == 3
    assert [s.connection_pool.connection_kwargs["port"]
            for s in pool.sentinel_manager.sentinels] == [26379, 26380, 26381]
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs[
        "password"] == "s3ntinel"


@pytest.mark.usefixtures("sentinel_env")
def test_flower_builds_its_sentinel_broker_client_from_the_settings():
    """Flower's broker page and queue lengths build their own Redis client from the URL
    Flower is given (kombu's, whose scheme is the transport's class path: a 404 before)."""
    from types import SimpleNamespace

    from flower.app import Flower
    from flower.utils.broker import Broker

    from workers.flower import _broker_url_as_configured

    app = app_of(fresh_celeryconfig())
    _broker_url_as_configured()
    flower = SimpleNamespace(capp=app)
    url = Flower.broker_uri_with_password.fget(flower)
    assert url == SENTINELS.split(";")[0]
    assert "m4ster" not in Flower.broker_uri.fget(flower)
    broker = Broker(url, broker_options=app.conf.broker_transport_options,
                    broker_use_ssl=app.conf.broker_use_ssl)
    assert type(broker).__name__ == "RedisSentinel"
    assert broker.master_name == "collector-main"


def test_a_sentinel_list_without_a_master_name_is_a_clear_startup_error(monkeypatch):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", SENTINELS)
    monkeypatch.delenv("COLLECTOR_REDIS_MASTER_NAME", raising=False)
    monkeypatch.delenv("COLLECTOR_RESULT_BACKEND", raising=False)
    with pytest.raises(SettingsError, match="COLLECTOR_BROKER_URL is a Sentinel list.*"
                                            "set COLLECTOR_REDIS_MASTER_NAME"):
        load_settings()
    from workers.cli.main import main

    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 1
    assert "COLLECTOR_REDIS_MASTER_NAME" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "m4ster" not in result.output

    # A Sentinel result backend behind a plain broker needs it as much.
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("COLLECTOR_RESULT_BACKEND", SENTINELS)
    with pytest.raises(SettingsError, match="COLLECTOR_RESULT_BACKEND is a Sentinel list"):
        load_settings()


@pytest.mark.parametrize("url, host", [
    ("sentinel://10.0.0.7:26379/0", "10.0.0.7"),
    ("sentinel://:pw@127.0.0.1:26379/0;sentinel://sentinel2.example.net:26379/0",
     "sentinel2.example.net"),
    ("rediss://redis.example.net:6380/0", "redis.example.net"),
])
def test_sentinels_and_tls_beyond_localhost_still_need_a_password(monkeypatch, url, host):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", url)
    monkeypatch.setenv("COLLECTOR_REDIS_MASTER_NAME", "collector-main")
    with pytest.raises(SettingsError, match=f"COLLECTOR_BROKER_URL reaches {host} without"):
        load_settings()


@pytest.mark.parametrize("env, fragment", [
    ({"COLLECTOR_BROKER_URL": "sentinel://:pw@127.0.0.1:26379/0;redis://127.0.0.1:6379/0"},
     "a Sentinel list takes sentinel:// URLs only"),
    ({"COLLECTOR_BROKER_URL": "sentinel://127.0.0.1:26379/zero"}, "database number 'zero'"),
    ({"COLLECTOR_REDIS_CA_FILE": "/nonexistent/ca.pem"}, "COLLECTOR_REDIS_CA_FILE="),
    ({"COLLECTOR_REDIS_CERT_FILE": __file__}, "COLLECTOR_REDIS_KEY_FILE go together"),
    ({"COLLECTOR_BROKER_URL": "redis://127.0.0.1/0;redis://127.0.0.1:6380/0",
      "COLLECTOR_RESULT_BACKEND": "redis://127.0.0.1/0;redis://127.0.0.1:6380/0"},
     "a result backend takes one URL"),  # a failover list of plain URLs: still refused
])
def test_unusable_sentinel_and_tls_settings_are_refused(monkeypatch, env, fragment):
    monkeypatch.setenv("COLLECTOR_REDIS_MASTER_NAME", "collector-main")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_rediss_with_a_ca_file_verifies_the_server_everywhere(tls_env):
    config = fresh_celeryconfig()
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": tls_env["ca"],
                "ssl_certfile": tls_env["cert"], "ssl_keyfile": tls_env["key"]}
    assert config.broker_use_ssl == expected
    assert config.redis_backend_use_ssl == expected
    assert config.redbeat_redis_use_ssl == expected
    assert config.redbeat_redis_url == "rediss://:pw@redis.example.net:6380/2"
    assert "master_name" not in config.broker_transport_options

    app = app_of(config)
    import redis

    params = app.backend.connparams
    assert issubclass(params["connection_class"], redis.SSLConnection)
    assert (params["ssl_cert_reqs"], params["ssl_ca_certs"]) == (ssl.CERT_REQUIRED,
                                                                 tls_env["ca"])
    with app.connection_for_write() as conn:
        assert conn.ssl == expected
    from redbeat.schedulers import get_redis

    beat = get_redis(app).connection_pool
    assert issubclass(beat.connection_class, redis.SSLConnection)
    assert beat.connection_kwargs["ssl_ca_certs"] == tls_env["ca"]
    assert beat.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert beat.connection_kwargs["ssl_certfile"] == tls_env["cert"]

    from workers.agent.client import make_app, redis_client

    client_app = make_app()
    assert client_app.conf.broker_use_ssl == expected
    assert client_app.conf.redis_backend_use_ssl == expected
    pool = redis_client().connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["ssl_ca_certs"] == tls_env["ca"]
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_rediss_without_a_ca_file_still_requires_a_verified_certificate(monkeypatch):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "rediss://:pw@redis.example.net:6380/0")
    for name in ("COLLECTOR_REDIS_CA_FILE", "COLLECTOR_REDIS_CERT_FILE",
                 "COLLECTOR_REDIS_KEY_FILE", "COLLECTOR_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    config = fresh_celeryconfig()
    assert config.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # the system's CAs
    assert redbeat_settings(settings, settings.broker_url)["redbeat_redis_use_ssl"] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_a_plain_broker_gets_no_tls_and_no_sentinel_options(monkeypatch):
    monkeypatch.setenv("COLLECTOR_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("COLLECTOR_REDIS_CA_FILE", sys.executable)  # set, but not rediss://
    monkeypatch.delenv("COLLECTOR_RESULT_BACKEND", raising=False)
    config = fresh_celeryconfig()
    assert config.broker_use_ssl is None and config.redis_backend_use_ssl is None
    assert config.redbeat_redis_use_ssl is None
    assert config.redbeat_redis_url == "redis://127.0.0.1:6379/0"
    assert config.redbeat_redis_options == {}
    assert "master_name" not in config.broker_transport_options
