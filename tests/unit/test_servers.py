"""The test servers are real: Redis answers and survives a restart, PostgreSQL runs SQL."""

import psycopg
import redis


def test_redis_server_answers_and_survives_restart(redis_server):
    client = redis.Redis.from_url(f"{redis_server.url}/15")
    assert client.ping()
    redis_server.restart()
    assert redis.Redis.from_url(f"{redis_server.url}/15").ping()


def test_postgres_server_runs_sql(postgres_server):
    url = postgres_server.create_database("servers_check").replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
