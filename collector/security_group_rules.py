"""Security group rules: one per line, ``<proto>:<from>,<to>,<source>``.

    tcp:22,22,ip4:0.0.0.0          -> {ip_protocol: tcp, ip_fport: 22, ip_tport: 22,
                                        protocol: ip4, ip_source: 0.0.0.0/0}
    udp:53,53,sg-abcd1234          -> source is another group (protocol null)
    icmp:8,-1,ip4:10.0.0.0/8       -> {ip_protocol: icmp, icmp_type: 8, icmp_code: -1, ...}

Blank lines and ``#`` comments are skipped; whitespace is ignored; ``ip6`` sources are
skipped (not supported by the agents). An ``ip4`` source is exactly the network written
(``0.0.0.0/8`` stays ``/8``, an address alone is ``/32``, ``0.0.0.0`` alone is the
original's "anywhere", ``0.0.0.0/0``); one with host bits set (``10.0.0.0/0``) is refused:
a firewall rule is never wider, nor narrower, than written. A malformed rule raises
InvalidSecurityGroupRuleSyntax. Fixed from the original: ICMP type and code are no
longer swapped on output.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from collector.errors import InvalidSecurityGroupRuleSyntax

ICMP_TYPES = {-1, 0, 3, 5, 8, *range(11, 19)}
ICMP_CODES = set(range(-1, 16))
SG_SOURCE = re.compile(r"^sg-[a-z0-9]+$")


def parse_rules(text: str | None) -> list[dict[str, Any]]:
    rules = []
    for line in (text or "").splitlines():
        rule = parse_rule(line)
        if rule is not None:
            rules.append(rule)
    return rules


def parse_rule(line: str) -> dict[str, Any] | None:
    line = re.sub(r"\s+", "", line)
    if not line or line.startswith("#"):
        return None
    proto, sep, rest = line.partition(":")
    parts = rest.split(",")
    if not sep or len(parts) != 3:
        raise InvalidSecurityGroupRuleSyntax(f"not <proto>:<from>,<to>,<source>: {line!r}")
    first, second, source = parts
    proto = proto.lower()
    src = _source(source, line)
    if src is None:
        return None
    if proto in ("tcp", "udp"):
        fport, tport = _int(first, line), _int(second, line)
        if not (1 <= fport <= 65535 and 1 <= tport <= 65535 and fport <= tport):
            raise InvalidSecurityGroupRuleSyntax(f"bad port range in {line!r}")
        return {"ip_protocol": proto, "ip_fport": fport, "ip_tport": tport, **src}
    if proto == "icmp":
        icmp_type, icmp_code = _int(first, line), _int(second, line)
        if icmp_type not in ICMP_TYPES or icmp_code not in ICMP_CODES:
            raise InvalidSecurityGroupRuleSyntax(f"bad ICMP type/code in {line!r}")
        if icmp_type == -1 and icmp_code != -1:
            return None  # "any type" with a specific code matches nothing
        return {"ip_protocol": "icmp", "icmp_type": icmp_type, "icmp_code": icmp_code, **src}
    raise InvalidSecurityGroupRuleSyntax(f"unsupported protocol {proto!r} in {line!r}")


def _int(text: str, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidSecurityGroupRuleSyntax(f"not a number: {text!r} in {line!r}") from None


def _source(source: str, line: str) -> dict[str, Any] | None:
    if SG_SOURCE.match(source):
        return {"protocol": None, "ip_source": source}
    scheme, _, address = source.partition(":")
    if scheme == "ip6":
        return None
    if scheme != "ip4" or not address:
        raise InvalidSecurityGroupRuleSyntax(f"unknown source {source!r} in {line!r}")
    if address == "0.0.0.0":  # the original's "anywhere", written without a prefix
        return {"protocol": "ip4", "ip_source": "0.0.0.0/0"}
    host, slash, prefix = address.partition("/")
    if slash and not prefix.isdigit():
        raise InvalidSecurityGroupRuleSyntax(f"bad IPv4 source {source!r} in {line!r}")
    try:
        # Exactly the network written: host bits set (10.0.0.0/0, 10.0.0.5/24) are refused,
        # never widened or narrowed into another network.
        network = ipaddress.IPv4Network(f"{host}/{prefix if slash else 32}", strict=True)
    except ValueError as exc:
        raise InvalidSecurityGroupRuleSyntax(
            f"bad IPv4 source {source!r} in {line!r}: {exc}") from None
    return {"protocol": "ip4", "ip_source": str(network)}
