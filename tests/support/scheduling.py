"""Builders and probes the scheduling tests share (``tests/unit/scheduling``).

Snapshots for the pure strategies: ``host`` (a HostCandidate by its free room), ``request``
(a HostRequest), ``node`` (a StorageCandidate).
A database world for the job steps: ``make_world`` (the ``world`` fixture of
``tests/unit/scheduling/conftest.py``), ``scheduling_instance`` (what the API leaves for
the scheduler), and what a test reads back: ``messages``, ``scheduled_events``,
``alive_addresses``, ``counters_true``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from collector.models import (
    LOCAL,
    HostNode,
    Instance,
    LocalVolume,
    MacRange,
    Network,
    NetworkVifIpLease,
    NodeState,
    OutboxMessage,
    StorageNode,
    Volume,
)
from collector.scheduling import capacity
from collector.scheduling.candidates import MB, HostCandidate, HostRequest, StorageCandidate
from workers.demo.world import make

GB = 1024 * MB


# --- snapshots for the pure strategies ------------------------------------------------------

def host(id_: int, free_cpu: int = 8, free_mem: int = 8192, free_disk: int = 100 * GB,
         **kw: Any) -> HostCandidate:
    """A schedulable kvm x86_64 host ``hn-host<id>`` with this much room free."""
    base = dict(id=id_, uuid=f"hn-host{id_:04d}", node_id=f"hva.h{id_}", hypervisor="kvm",
                arch="x86_64", online=True, scheduling_enabled=True, offering_cpu_cores=16,
                offering_memory_size=16384, offering_disk_bytes=200 * GB)
    base.update(kw)
    return HostCandidate(**base, used_cpu_cores=base["offering_cpu_cores"] - free_cpu,
                         used_memory_size=base["offering_memory_size"] - free_mem,
                         used_disk_bytes=base["offering_disk_bytes"] - free_disk)


def request(cpu: int = 2, mem: int = 2048, disk: int = 10 * GB, **kw: Any) -> HostRequest:
    return HostRequest(instance_id="i-test0001", hypervisor=kw.pop("hypervisor", "kvm"),
                       arch=kw.pop("arch", "x86_64"), cpu_cores=cpu, memory_size=mem,
                       disk_bytes=disk, **kw)


def node(id_: int, free: int, online: bool = True) -> StorageCandidate:
    """An iSCSI storage node of 1000 GB with ``free`` bytes free."""
    return StorageCandidate(id=id_, uuid=f"sn-st{id_:04d}", node_id=f"sta.s{id_}",
                            storage_type="iscsi", online=online, offering_disk_bytes=1000 * GB,
                            used_disk_bytes=1000 * GB - free)


# --- a database world for the job steps -----------------------------------------------------

@dataclass
class World:
    hv: str
    hosts: list[HostNode]
    storage: StorageNode
    net: Network
    local_image: Any
    san_image: Any


def make_world(session: Session) -> World:
    """Hosts of a hypervisor only this test uses, the only MAC range and online storage."""
    hv = f"kvm-{secrets.token_hex(3)}"
    session.execute(delete(MacRange))
    make.mac_range(session, range_begin=0x100000, range_end=0x1FFFFF)
    session.execute(update(NodeState).where(NodeState.node_id.in_(select(StorageNode.node_id)))
                    .values(state="offline"))
    hosts = [make.host_node(session, hypervisor=hv, offering_cpu_cores=4,
                            offering_memory_size=4096, offering_disk_space_mb=50 * 1024)
             for _ in range(2)]
    storage = make.storage_node(session, offering_disk_space_mb=100 * 1024)
    n = secrets.randbelow(200)
    return World(hv, hosts, storage, make.network(session, f"10.{n}.7.0/24"),
                 make.image(session, local=True), make.image(session, local=False))


def scheduling_instance(session: Session, w: World, local: bool = True, cpu: int = 1,
                        mem: int = 1024, vifs: dict[str, Any] | None = None,
                        shared: tuple[int, ...] = (), **params: Any) -> Instance:
    """What the API leaves behind: instance and volumes in ``scheduling``."""
    if vifs is None:
        vifs = {"eth0": {"network": w.net.canonical_uuid}}
    inst = make.instance(session, img=w.local_image if local else w.san_image,
                         state="scheduling", status="init", hypervisor=w.hv,
                         cpu_cores=cpu, memory_size=mem,
                         request_params={"vifs": vifs, **params})
    boot = make.volume(session, inst, kind=LOCAL if local else None, size=10 * GB,
                       state="scheduling", boot=True) if local else \
        _unplaced_volume(session, inst, 10 * GB, boot=True)
    for size in shared:
        _unplaced_volume(session, inst, size)
    session.execute(delete(LocalVolume).where(LocalVolume.id == boot.id))
    session.flush()
    session.expire(inst)
    return inst


def _unplaced_volume(session: Session, inst: Instance, size: int, boot: bool = False
                     ) -> Volume:
    vol = Volume(size=size, state="scheduling", instance_id=inst.id, account_id=inst.account_id)
    session.add(vol)
    session.flush()
    if boot:
        inst.boot_volume_id = vol.canonical_uuid
    return vol


# --- what a test reads back -------------------------------------------------------------------

def messages(session: Session, result: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """(queue, task name, args) of the jobs a placement answer names, in order."""
    return [(m.queue, m.name, m.payload["args"]) for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.task_id.in_(result.get("jobs", [])))
        .order_by(OutboxMessage.id))]


def scheduled_events(session: Session, cuuid: str) -> list[OutboxMessage]:
    return [m for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "event", OutboxMessage.routing_key.like("instance.scheduled.%")))
        if m.payload["args"][1] == [cuuid]]


def alive_addresses(session: Session, inst: Instance) -> list[int]:
    return list(session.scalars(select(NetworkVifIpLease.ipv4).where(
        NetworkVifIpLease.network_vif_id.in_([v.id for v in inst.network_vifs]),
        NetworkVifIpLease.deleted_at.is_(None))).all())


def counters_true(session: Session) -> bool:
    """The used-capacity counters equal the sums of the allocation rows."""
    return capacity.reconcile(session) == []
