"""The agent library: what a node agent (or any other client) imports to talk to the
Collector. Its base install needs Celery, kombu and redis only; the Collector's names come
from ``collector.wire``.

- ``client``: ``Collector`` (RPC calls, one-shot casts, job pushes, events) and its typed
  errors;
- ``base``: ``Agent``, the per-node job consumer that reports to the job ledger;
- ``transport``: the Redis transport whose hand-over a kill cannot interrupt.
"""

from workers.agent.base import Agent, JobContext
from workers.agent.client import BrokerUnavailable, Collector, RpcError, RpcTimeout

__all__ = ["Agent", "BrokerUnavailable", "Collector", "JobContext", "RpcError", "RpcTimeout"]
