"""Canonical ids: ``<prefix>-<8 chars of [a-z0-9]>`` (``i-abc12345``).

The database keeps the 8-char part in a ``uuid`` column; the wire always carries the
canonical form. A lookup with another prefix is an error, never a silent miss.
"""

from __future__ import annotations

import re
import secrets
import string

from collector.errors import InvalidArgument

_ALPHABET = string.ascii_lowercase + string.digits
_CANONICAL = re.compile(r"^([a-z]+)-([a-z0-9]{1,64})$")

# prefix -> what it names (mirrors the original registry; prefixes are globally unique)
PREFIXES: dict[str, str] = {
    "a": "account", "hn": "host_node", "sn": "storage_node", "i": "instance",
    "vol": "volume", "snap": "volume_snapshot", "wmi": "image", "bo": "backup_object",
    "bkst": "backup_storage", "ssh": "ssh_key_pair", "tag": "tag", "nwg": "network_group",
    "hng": "host_node_group", "sng": "storage_node_group", "nw": "network",
    "dcn": "dc_network", "vif": "network_vif", "sg": "security_group", "ip": "ip_handle",
    "ipp": "ip_pool", "mr": "mac_range", "nwm": "network_vif_monitor", "lb": "load_balancer",
    "alm": "alarm", "job": "queued_job", "vlan": "vlan_lease", "pg": "placement_group",
}


def new_uuid() -> str:
    """A fresh 8-char id part."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def canonical(prefix: str, raw: str) -> str:
    return f"{prefix}-{raw}"


def split(cuuid: object) -> tuple[str, str]:
    """Split a canonical id into (prefix, raw); InvalidArgument when it is not one."""
    if not isinstance(cuuid, str):
        raise InvalidArgument(f"expected a canonical id string, got {type(cuuid).__name__}")
    match = _CANONICAL.match(cuuid)
    if not match:
        raise InvalidArgument(f"invalid canonical id: {cuuid!r}")
    return match.group(1), match.group(2)


def raw_part(cuuid: object, prefix: str) -> str:
    """The raw part of ``cuuid``, which must carry ``prefix``."""
    got, raw = split(cuuid)
    if got != prefix:
        raise InvalidArgument(f"invalid id {cuuid!r}: expected prefix {prefix}-")
    return raw


def raw_part_or_none(cuuid: object, prefix: str) -> str | None:
    """``raw_part``, or None when ``cuuid`` is malformed or carries another prefix."""
    try:
        return raw_part(cuuid, prefix)
    except InvalidArgument:
        return None
