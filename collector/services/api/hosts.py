"""``api``: the original REST API's host node actions (``PUT /host_nodes/:id/evacuate``).

evacuate_host(host_node_id) -> {"scheduled": [i-...], "failed": [i-...], "halted": [i-...]}
    synchronously, as the original: the host's HA instances re-placed on other hosts (boot
    jobs sent after the commit), its other running instances halted, the host's
    ``scheduling_enabled`` as it was before (see ``collector.scheduling.evacuation``).
set_host_scheduling(host_node_id, enabled) -> {"id", "node_id", "scheduling_enabled"}
    whether placement may choose the host: an operator drains a host (False) or takes it
    back after an automatic evacuation left it out (True).
set_host_allocation_ratios(host_node_id, cpu=None, ram=None) -> the host's ``collector nodes``
    row: placement offers physical x ratio of the host's cpu and memory from the commit on;
    a number (above 0, at most 100, three decimals), or "default" (the scheduler
    configuration's again); None leaves that one as it is. Nothing already placed moves,
    even when a lowered ratio leaves the host using more than it now offers: only new
    claims are refused until enough is freed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from collector.errors import InvalidParameter
from collector.models import HostNode
from collector.scheduling import evacuation, ratios
from collector.services.stats import host_overview

DEFAULT_RATIO = "default"  # a ratio argument: the host follows the configured default again


def evacuate_host(session: Session, host_node_id: str) -> dict[str, list[str]]:
    """Evacuate a host now (hn-...): UnknownHostNodeID, InvalidArgument for a bad id."""
    return evacuation.evacuate_from(session, host_node_id, keep_offline=False)


def set_host_scheduling(session: Session, host_node_id: str, enabled: bool) -> dict:
    """Let placement choose the host (hn-...) or keep new instances off it; what runs there
    stays. UnknownHostNodeID, InvalidArgument for a bad id or a flag that is not a bool."""
    host = HostNode.by_cuuid(session, host_node_id, for_update=True)
    host.scheduling_enabled = enabled
    session.flush()
    return {"id": host.canonical_uuid, "node_id": host.node_id,
            "scheduling_enabled": host.scheduling_enabled}


def set_host_allocation_ratios(session: Session, host_node_id: str,
                               cpu: float | str | None = None,
                               ram: float | str | None = None) -> dict:
    """Set the host's (hn-...) cpu and/or memory allocation ratio: a number above 0, at most
    100, with at most three decimals, or "default" (the scheduler configuration's); None
    leaves it. What runs there stays: a lower ratio only refuses new claims. Answers the
    host's ``collector nodes`` row. UnknownHostNodeID; InvalidArgument for a bad id;
    InvalidParameter for any other ratio, or neither given (nothing written)."""
    wanted: dict[str, int | None] = {}
    for column, name, value in (("cpu_allocation_ratio_milli", "cpu", cpu),
                                ("ram_allocation_ratio_milli", "ram", ram)):
        if value is None:
            continue
        if value == DEFAULT_RATIO:
            wanted[column] = None
            continue
        try:
            wanted[column] = ratios.ratio_milli(value)
        except ValueError as exc:
            raise InvalidParameter(f"{name} allocation ratio: {exc} (or {DEFAULT_RATIO!r})") \
                from None
    if not wanted:
        raise InvalidParameter("no allocation ratio given: cpu, ram or both")
    host = HostNode.by_cuuid(session, host_node_id, for_update=True)
    for column, milli in wanted.items():
        setattr(host, column, milli)
    session.flush()
    return host_overview(session, [host.id])[0]
