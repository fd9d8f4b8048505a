"""``api``: the original REST API's host node actions (``PUT /host_nodes/:id/evacuate``).

evacuate_host(host_node_id) -> {"scheduled": [i-...], "failed": [i-...], "halted": [i-...]}
    synchronously, as the original: the host's HA instances re-placed on other hosts (boot
    jobs sent after the commit), its other running instances halted, the host's
    ``scheduling_enabled`` as it was before (see ``collector.scheduling.evacuation``).
set_host_scheduling(host_node_id, enabled) -> {"id", "node_id", "scheduling_enabled"}
    whether placement may choose the host: an operator drains a host (False) or takes it
    back after an automatic evacuation left it out (True).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from collector.models import HostNode
from collector.scheduling import evacuation


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
