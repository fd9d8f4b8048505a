"""State machines: which state changes agents may report.

Several workers serve an endpoint at once, so updates can arrive out of order. A resend
of the current state is a no-op; a change the machine does not allow is refused with
InvalidStateTransition, so a late ``attaching`` can never overwrite ``attached``.
"""

from __future__ import annotations

from collector.errors import InvalidArgument, InvalidStateTransition

INSTANCE_TRANSITIONS: dict[str, set[str]] = {
    "init": {"scheduling", "pending", "shuttingdown"},
    "scheduling": {"pending", "shuttingdown"},
    "pending": {"initializing", "starting", "running", "halted", "shuttingdown", "stopping"},
    "initializing": {"starting", "running", "halted", "shuttingdown", "stopping"},
    "starting": {"running", "halted", "shuttingdown", "stopping"},
    "running": {"halting", "halted", "stopping", "migrating", "shuttingdown"},
    "halting": {"halted", "running", "shuttingdown"},
    "halted": {"starting", "running", "pending", "shuttingdown", "stopping"},
    "stopping": {"stopped", "shuttingdown", "halted"},
    "stopped": {"scheduling", "pending", "shuttingdown"},
    "migrating": {"running", "halted", "shuttingdown"},
    "shuttingdown": set(),
    "terminated": set(),
}
INSTANCE_STATUSES = frozenset({"init", "online", "offline"})

VOLUME_TRANSITIONS: dict[str, set[str]] = {
    "initialized": {"scheduling", "pending", "registering", "creating", "available", "failed",
                    "deleting"},
    "registering": {"creating", "available", "failed", "deleting"},
    "scheduling": {"pending", "failed", "deleting"},
    "pending": {"creating", "available", "failed", "deleting"},
    "creating": {"available", "failed", "deleting"},
    "available": {"attaching", "deleting", "deregistering", "pending", "failed"},
    "attaching": {"attached", "available", "failed", "deleting"},
    "attached": {"detaching", "deleting", "available"},
    "detaching": {"available", "attached", "failed", "deleting"},
    "failed": {"deleting", "available"},
    "deregistering": {"deleting", "available"},
    "deleting": {"available"},
    "deleted": set(),
}

# Legacy volume snapshots: the API sets creating / deleting, the sta agent reports available
# (or deleted). ``deleted`` is terminal and reached through a deletion report only.
SNAPSHOT_TRANSITIONS: dict[str, set[str]] = {
    "initialized": {"registering", "creating", "available", "failed", "deleting"},
    "registering": {"creating", "available", "failed", "deleting"},
    "creating": {"available", "failed", "deleting"},
    "available": {"deleting", "failed"},
    "failed": {"deleting"},
    "deleting": {"available", "failed"},
    "deleted": set(),
}

BACKUP_OBJECT_TRANSITIONS: dict[str, set[str]] = {
    "initialized": {"pending", "creating", "available"},
    "pending": {"creating", "available"},
    "creating": {"available"},
    "available": {"purged"},
    "deleted": {"purged"},
    "purged": set(),
}

IMAGE_TRANSITIONS: dict[str, set[str]] = {
    "init": {"creating", "pending", "available"},
    "creating": {"available", "pending"},
    "pending": {"creating", "available"},
    "available": {"creating"},
    "deleted": set(),
}


def check_transition(kind: str, table: dict[str, set[str]], current: str, new: object,
                     terminal: str | None = None) -> bool:
    """True when ``current -> new`` must be applied, False when it is a no-op resend.

    Unknown state names are InvalidArgument; disallowed changes InvalidStateTransition.
    """
    known = set(table) | ({terminal} if terminal else set())
    if not isinstance(new, str) or new not in known:
        raise InvalidArgument(f"unknown {kind} state: {new!r}")
    if new == current:
        return False
    if new not in table.get(current, set()):
        raise InvalidStateTransition(f"{kind} cannot go from {current!r} to {new!r}")
    return True
