"""``collector worker`` with two baseline tasks more, registered RPCs like the others
(argument check, read-only unit of work, result after commit):

- ``hva-collector.get_bench_state(pk)``: one primary-key read by SQLAlchemy Core, what every
  RPC pays to touch the database at all;
- ``hva-collector.get_bench_answer(instance_id)``: get_instance's answer without any SQL
  (built once per process, then returned as is), what the answer's size costs alone.

The bare no-op is ``hva-collector.ping``. Run: ``python -m bench.worker --role hva-collector --pool
prefork --concurrency 2`` (the arguments of ``collector worker``).
"""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from collector.models import Instance

_STATE = select(Instance.__table__.c.state).where(Instance.__table__.c.id == bindparam("pk"))


def get_bench_state(session: Session, pk: int) -> str | None:
    """One primary-key read: the instance's state."""
    return session.execute(_STATE, {"pk": pk}).scalar()


_ANSWERS: dict[str, Any] = {}


def get_bench_answer(session: Session, instance_id: str) -> dict[str, Any]:
    """get_instance's document, read once per process."""
    if instance_id not in _ANSWERS:
        from collector.services import hva

        _ANSWERS[instance_id] = hva.get_instance(session, instance_id)
    return _ANSWERS[instance_id]


def main() -> None:
    import tasks.endpoints.hva_collector  # noqa: F401 - the endpoint's real tasks first
    from tasks.registry import Endpoint
    from workers.cli.main import main as collector

    endpoint = Endpoint("hva-collector")
    endpoint.register("get_bench_state", get_bench_state)
    endpoint.register("get_bench_answer", get_bench_answer)
    collector(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
