"""Why no host took a request, host by host, counted as Kubernetes counts nodes:
``0/1000 hosts available for i-abc12345 (...): 600 short of memory, 395 not in host node
group hng-web (PipedRules), 3 disabled, 2 offline``.

The count is of the whole fleet (every host node row, as Kubernetes counts every node), each
host once, under the first of these that holds for it:

1. ``other hypervisor or arch`` than the request's;
2. ``offline``: its node is not online (timeout, offline, or never heard of);
3. ``disabled``: ``scheduling_enabled`` is false (drained, or left out after an evacuation);
4. each of the strategy's exclusions in turn (``HostStrategy.exclusions``: ExcludeSame's
   current host, SpecifyNode's other hosts, PipedRules' group rules), then the hard policy
   of the instance's placement group (``excluded by anti-affinity of group web``, ``not the
   host of affinity group db``);
5. ``short of cpu``, ``short of memory``, ``short of local disk``: what it offers (physical x
   allocation ratio for cpu and memory) minus what is used is less than the request;
6. otherwise it had room when counted: the strategy's own rules passed it over (a custom
   rule that says nothing of itself), or concurrent placements held it while this one tried.

One grouped query, whatever the fleet's size, run only once a placement has failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, false, func, literal, not_, or_, select
from sqlalchemy.orm import Session

from collector.models import HostNode, HostNodeGroup, NodeState, Tag, TagMapping
from collector.scheduling import groups
from collector.scheduling.candidates import MB, HostExclusion, HostRequest
from collector.scheduling.capacity import HOST_DISK, offered_cpu_cores, offered_memory_size

OTHER, OFFLINE, DISABLED = "other hypervisor or arch", "offline", "disabled"
SHORT = ("short of cpu", "short of memory", "short of local disk")
PASSED_OVER = "with room but passed over (the strategy's rules, or concurrent placements)"


def _raw(cuuid: str, prefix: str) -> str:
    """The raw uuid of a canonical id (a malformed one matches no row)."""
    return cuuid[len(prefix) + 1:] if cuuid.startswith(f"{prefix}-") else cuuid


def _excluded(exclusion: HostExclusion) -> Any:
    """SQL: the host row is one that ``exclusion`` refuses."""
    conditions = []
    if exclusion.hosts:
        conditions.append(HostNode.uuid.in_([_raw(h, HostNode.prefix) for h in exclusion.hosts]))
    if exclusion.only is not None:
        conditions.append(HostNode.uuid.not_in([_raw(h, HostNode.prefix)
                                                for h in exclusion.only]))
    if exclusion.group is not None:
        members = (select(TagMapping.uuid).join(Tag, Tag.id == TagMapping.tag_id)
                   .where(Tag.uuid == _raw(exclusion.group, HostNodeGroup.prefix),
                          Tag.type_id == HostNodeGroup.__mapper_args__["polymorphic_identity"]))
        conditions.append(not_(literal(f"{HostNode.prefix}-").concat(HostNode.uuid)
                               .in_(members)))
    return or_(*conditions) if conditions else false()


def count_refusals(session: Session, request: HostRequest,
                   exclusions: Sequence[HostExclusion] = ()) -> tuple[int, dict[str, int]]:
    """(every host, {reason: hosts}) for ``request``: the reasons above, each host once."""
    grouped = groups.allows(request.group)  # a hard placement group's condition
    reasons = [OTHER, OFFLINE, DISABLED, *(e.reason for e in exclusions),
               *([groups.refusal_reason(request.group)] if grouped is not None else []), *SHORT]
    whens = [
        (or_(HostNode.hypervisor != request.hypervisor, HostNode.arch != request.arch), 0),
        (func.coalesce(NodeState.state, "offline") != "online", 1),
        (HostNode.scheduling_enabled.is_not(True), 2),
        *((_excluded(e), 3 + n) for n, e in enumerate(exclusions)),
    ]
    if grouped is not None:
        whens.append((not_(grouped), len(whens)))
    shortfalls = (HostNode.used_cpu_cores + request.cpu_cores > offered_cpu_cores(),
                  HostNode.used_memory_size + request.memory_size > offered_memory_size(),
                  HostNode.used_disk_bytes + request.disk_bytes > HOST_DISK)
    whens += [(short, len(whens) + n) for n, short in enumerate(shortfalls)]
    # Grouped outside: a CASE with parameters in both SELECT and GROUP BY is two
    # expressions to PostgreSQL.
    each = (select(case(*whens, else_=len(reasons)).label("reason"))
            .select_from(HostNode)
            .outerjoin(NodeState, NodeState.node_id == HostNode.node_id).subquery())
    counts: dict[str, int] = {}
    total = 0
    for code, hosts in session.execute(select(each.c.reason, func.count())
                                       .group_by(each.c.reason).order_by(each.c.reason)):
        label = reasons[code] if code < len(reasons) else PASSED_OVER
        counts[label] = counts.get(label, 0) + hosts
        total += hosts
    return total, counts


def no_host_matches(counts: dict[str, int]) -> bool:
    """No host is of the request's hypervisor and arch, online and enabled
    (NoMatchingHostNode rather than InsufficientCapacity)."""
    return not any(n for reason, n in counts.items() if reason not in (OTHER, OFFLINE, DISABLED))


def explain(request: HostRequest, total: int, counts: dict[str, int]) -> str:
    """The refusal as an operator reads it: the request, then hosts per reason, most first."""
    disk_mb = -(-request.disk_bytes // MB)
    head = (f"0/{total} hosts available for {request.instance_id} ({request.cpu_cores} cpu "
            f"cores, {request.memory_size} MB memory, {disk_mb} MB local disk, "
            f"{request.arch} {request.hypervisor})")
    if not total:
        return f"{head}: no host node is registered"
    order = list(counts)  # in the reasons' order, which breaks ties
    ranked = sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0])))
    return f"{head}: " + ", ".join(f"{n} {reason}" for reason, n in ranked)


def explained(session: Session, request: HostRequest,
              exclusions: Sequence[HostExclusion] = ()) -> tuple[bool, str]:
    """(no host matches at all, the explanation) of a request no host took."""
    total, counts = count_refusals(session, request, exclusions)
    return no_host_matches(counts), explain(request, total, counts)
