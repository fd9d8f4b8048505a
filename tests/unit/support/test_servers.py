"""The test servers are real: Redis answers and survives a restart, PostgreSQL runs SQL."""

import psycopg
import redis

from tests.support.servers import free_port, redis_server_binary


def test_redis_server_answers_and_survives_restart(redis_server):
    assert redis_server_binary()
    client = redis.Redis.from_url(f"{redis_server.url}/15")
    assert client.ping()
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    assert redis.Redis.from_url(f"{redis_server.url}/15").ping()


def test_postgres_server_runs_sql_and_creates_databases(postgres_server):
    with psycopg.connect(postgres_server.url().replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    url = postgres_server.create_database("servers_check")
    assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("servers_check",)


def test_free_port_is_bindable():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
