"""``api``: the original REST API's host node actions (``PUT /host_nodes/:id/evacuate``).

evacuate_host(host_node_id) -> {"scheduled": [i-...], "failed": [i-...], "halted": [i-...]}
    synchronously, as the original: the host's HA instances re-placed on other hosts (boot
    jobs sent after the commit), its other running instances halted, the host's
    ``scheduling_enabled`` as it was before (see ``collector.scheduling.evacuation``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from collector.scheduling import evacuation


def evacuate_host(session: Session, host_node_id: str) -> dict[str, list[str]]:
    """Evacuate a host now (hn-...): UnknownHostNodeID, InvalidArgument for a bad id."""
    return evacuation.evacuate_from(session, host_node_id, keep_offline=False)
