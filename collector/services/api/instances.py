"""``api``: the original REST API's side of instances and volumes (scheduler spec 1.8).

create_instance(params) -> instance document in ``scheduling``; job ``scheduler.schedule_instance``
start_instance(instance_id) -> document; only from ``stopped``: ``scheduling`` and job
    ``scheduler.schedule_start_instance``
stop_instance(instance_id) -> document; only from ``running``: the instance's IP leases are
    released and ``hva-handle.<node>`` gets ``stop``
terminate_instance(instance_id) -> document; an instance an agent runs gets ``terminate`` on
    ``hva-handle.<node>``; one no agent holds (``scheduling``: its placement is cancelled,
    ``stopped``) is terminated at once; a repeat changes nothing
create_volume(params) -> volume document: ``scheduling`` and job ``scheduler.schedule_volume``,
    or with ``storage_node_id`` its space claimed there, ``pending`` and ``sta-handle.<node>``
    ``create_volume``
list_instances / show_instance / list_volumes / show_volume -> documents (``documents.api``)

Every function runs in the caller's transaction. A request is checked whole before anything
is written, and the writes happen in a savepoint: a refused request (a typed error) leaves
nothing behind, even inside a longer transaction. Jobs go to the ledger and the outbox in
the same transaction and are sent after the commit.

Parameters of ``create_instance`` (the original's names; None means absent)::

    image_id (required)       wmi-...; the image must exist and be available
    hypervisor (required)     some online, scheduling-enabled host must have it
    cpu_cores (required)      1..128             memory_size (required)  128..999999 (MB)
    vifs                      {name: {network, nat_network, index, security_groups, mac_addr,
                              ipv4_addr, nat_ipv4_addr, monitors, network_group}} or the
                              same as JSON text (network_group nwg-...: a network of that
                              group, for the group strategies, instead of network)
    security_groups           sg-... or a list: every vif's groups (else each vif's own)
    volumes                   {key: {volume_type: local|shared, size (bytes, or "10G"),
                              backup_object_id, display_name}} or a list of such maps
    host_id | host_pool_id | host_node_id   hn-...: place there (its capacity claimed now)
    ha_enabled                true / false / "true" / "false"
    hostname                  [0-9a-z][0-9a-z-]{0,31}, unique per account (default: the id)
    account_id (a-...), ssh_key_id (ssh-...), user_data, display_name, quota_weight,
    service_type (default: the image's, else the configured default), network_scheduler
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector import ids, wire
from collector.db import outbox
from collector.documents.api import (
    instance_api_document,
    instances_query,
    volume_api_document,
    volumes_query,
)
from collector.errors import (
    InvalidArgument,
    InvalidInstanceState,
    InvalidParameter,
    NetworkSchedulingError,
    OutOfDiskSpace,
    OutOfHostCapacity,
    UnknownImageID,
    UnknownNetworkID,
)
from collector.fields import check_fits
from collector.models import (
    LOCAL,
    BackupObject,
    HostnameLease,
    Image,
    Instance,
    InstanceMonitorAttr,
    Network,
    NetworkGroup,
    SecurityGroup,
    SshKeyPair,
    StorageNode,
    Volume,
)
from collector.scheduling import capacity, teardown
from collector.scheduling import placement_config as config
from collector.scheduling import vifs as network
from collector.scheduling.candidates import StorageCandidate
from collector.scheduling.strategies import host_node, storage_node
from collector.timeutil import utcnow

DEFAULT_ACCOUNT = "a-shpoolxx"
CPU_CORES = (1, 128)
MEMORY_SIZE = (128, 999_999)  # MB
MANUAL_ADDRESS_KEYS = ("mac_addr", "ipv4_addr", "nat_ipv4_addr")
VIF_KEYS = frozenset({"index", "network", "nat_network", "network_group", "security_groups",
                      *MANUAL_ADDRESS_KEYS, "monitors", "vendor_id", "bandwidth"})
VOLUME_KEYS = frozenset({"volume_type", "size", "backup_object_id", "display_name"})
HOSTNAME = re.compile(r"^[0-9a-z][0-9a-z-]{0,31}$")
SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MB = 1 << 20

INT, NUMBER, TEXT, MAP, LIST = (int,), (int, float), (str,), (dict,), (list,)
INSTANCE_PARAMS: dict[str, tuple[type, ...]] = {
    "image_id": TEXT, "hypervisor": TEXT, "cpu_cores": INT, "memory_size": INT,
    "vifs": (dict, str), "security_groups": (str, list), "volumes": (dict, list),
    "host_id": TEXT, "host_pool_id": TEXT, "host_node_id": TEXT, "ha_enabled": (bool, str),
    "hostname": TEXT, "ssh_key_id": TEXT, "user_data": TEXT, "display_name": TEXT,
    "account_id": TEXT, "quota_weight": NUMBER, "service_type": TEXT,
    "network_scheduler": TEXT,
}
VOLUME_PARAMS: dict[str, tuple[type, ...]] = {
    "volume_size": INT, "backup_object_id": TEXT, "storage_node_id": TEXT,
    "display_name": TEXT, "account_id": TEXT, "service_type": TEXT,
}


# --- requests -------------------------------------------------------------------------------

def _present(params: dict[str, Any], allowed: dict[str, tuple[type, ...]],
             what: str) -> dict[str, Any]:
    """The given (non-None) parameters, each of an accepted JSON type; unknown keys refused."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidParameter(f"unknown {what} parameter(s): {', '.join(map(str, unknown))}")
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        types = allowed[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise InvalidParameter(f"{key} must be {names}, got {value!r:.60}")
        out[key] = value
    return out


def _cuuid(value: str, prefix: str, key: str) -> str:
    try:
        ids.raw_part(value, prefix)
    except InvalidArgument:
        raise InvalidParameter(f"{key} must be an id {prefix}-..., got {value!r:.60}") from None
    return value


def _in_range(params: dict[str, Any], key: str, bounds: tuple[int, int]) -> int:
    value = params.get(key)
    if value is None:
        raise InvalidParameter(f"{key} is required")
    if not bounds[0] <= value <= bounds[1]:
        raise InvalidParameter(f"{key} must be within {bounds[0]}..{bounds[1]}, got {value}")
    return value


def _fits(kind: str, model: type, values: dict[str, Any]) -> None:
    try:
        check_fits(kind, model, values)
    except InvalidArgument as exc:
        raise InvalidParameter(exc.message) from None


def _group_ids(value: Any, key: str) -> list[str]:
    """``sg-...`` or a list of them; blank entries mean none (the original crashed, S23)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidParameter(f"{key} must be an id sg-... or a list of them")
    return list(dict.fromkeys(_cuuid(i.strip(), "sg", key) for i in items if i.strip()))


def _size_bytes(value: Any, key: str) -> int:
    """Bytes from a number of bytes or a text such as ``"10G"`` / ``"512M"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and SIZE.match(value):
        number, unit = SIZE.match(value).groups()
        size = int(number) * SIZE_UNITS[unit.lower()]
    else:
        raise InvalidParameter(f"{key} must be a number of bytes or a size like '10G', "
                               f"got {value!r:.40}")
    if size <= 0 or size >= 2 ** 63:
        raise InvalidParameter(f"{key} must be positive and below 2^63 bytes")
    return size


@dataclass
class VolumeSpec:
    size: int
    local: bool
    backup_object_id: str | None = None
    display_name: str | None = None


@dataclass
class InstanceRequest:
    image: Image
    account_id: str
    hypervisor: str
    cpu_cores: int
    memory_size: int
    service_type: str
    vifs: dict[str, dict[str, Any]]
    security_groups: list[str] | None
    volumes: list[VolumeSpec]
    host: str | None
    ha_enabled: int
    hostname: str | None
    ssh_key_pair: SshKeyPair | None
    params: dict[str, Any] = field(default_factory=dict)  # kept as request_params


def check_instance_request(session: Session, params: dict[str, Any]) -> InstanceRequest:
    """Every check of spec 1.8.1, reading only: the request, or the typed error."""
    if not isinstance(params, dict):
        raise InvalidParameter("the request must be a map of parameters")
    p = _present(params, INSTANCE_PARAMS, "instance")
    if "image_id" not in p:
        raise InvalidParameter("image_id is required")
    image = Image.by_cuuid(session, _cuuid(p["image_id"], "wmi", "image_id"))
    if image.deleted_at is not None:
        raise UnknownImageID(f"image {p['image_id']} is deleted")
    if image.state != "available":
        raise InvalidParameter(f"image {p['image_id']} is {image.state}, not available")
    hypervisor = p.get("hypervisor")
    if not hypervisor:
        raise InvalidParameter("hypervisor is required")
    if not capacity.hypervisor_available(session, hypervisor):
        raise InvalidParameter(f"no online host accepting placements has hypervisor "
                               f"{hypervisor!r}")
    cpu = _in_range(p, "cpu_cores", CPU_CORES)
    memory = _in_range(p, "memory_size", MEMORY_SIZE)
    if not capacity.domain_host_capacity(session, cpu, memory):
        raise OutOfHostCapacity(f"the online hosts together lack {cpu} cpu cores and "
                                f"{memory} MB of memory")
    service_type = p.get("service_type") or image.service_type
    service_type = config.scheduler_config().service_type(service_type or None).name
    account_id = _cuuid(p.get("account_id", DEFAULT_ACCOUNT), "a", "account_id")
    _fits("instance", Instance, {k: p[k] for k in ("display_name", "hypervisor") if k in p})

    security_groups = (_group_ids(p["security_groups"], "security_groups")
                       if "security_groups" in p else None)
    vifs = _check_vifs(session, p.get("vifs"))
    _check_groups_exist(session, [*(security_groups or []),
                                  *(g for v in vifs.values() for g in v.get("security_groups", []))])
    volumes = _check_volumes(session, p.get("volumes"))

    hosts = [p[k] for k in ("host_id", "host_pool_id", "host_node_id") if k in p]
    host = _cuuid(hosts[0], "hn", "host_node_id") if hosts else None
    ha = p.get("ha_enabled", False)
    if isinstance(ha, str):
        if ha.lower() not in ("true", "false"):
            raise InvalidParameter(f"ha_enabled must be true or false, got {ha!r:.20}")
        ha = ha.lower() == "true"
    hostname = p.get("hostname")
    if hostname is not None:
        hostname = hostname.lower()
        if not HOSTNAME.match(hostname):
            raise InvalidParameter(f"hostname must match {HOSTNAME.pattern}, got {hostname!r:.40}")
        _check_hostname_free(session, account_id, hostname)
    ssh_key = None
    if "ssh_key_id" in p:
        ssh_key = SshKeyPair.by_cuuid(session, _cuuid(p["ssh_key_id"], "ssh", "ssh_key_id"))
        if ssh_key.deleted_at is not None:
            raise SshKeyPair.not_found(f"ssh key pair {p['ssh_key_id']} is deleted")
    if not 0 <= p.get("quota_weight", 0) < math.inf:
        raise InvalidParameter("quota_weight must be a finite number >= 0")

    kept = {**p, "vifs": vifs, "account_id": account_id, "service_type": service_type}
    if security_groups is not None:
        kept["security_groups"] = security_groups
    if "volumes" in kept:
        kept["volumes"] = [vars(v) for v in volumes]
    return InstanceRequest(
        image=image, account_id=account_id, hypervisor=hypervisor, cpu_cores=cpu,
        memory_size=memory, service_type=service_type, vifs=vifs,
        security_groups=security_groups, volumes=volumes, host=host, ha_enabled=int(ha),
        hostname=hostname, ssh_key_pair=ssh_key, params=kept)


def _check_vifs(session: Session, value: Any) -> dict[str, dict[str, Any]]:
    vifs = network.parse_vifs(value)
    out: dict[str, dict[str, Any]] = {}
    for name, vif in vifs.items():
        unknown = sorted(set(vif) - VIF_KEYS)
        if unknown:
            raise InvalidParameter(f"vif {name!r}: unknown key(s) {', '.join(unknown)}")
        vif = dict(vif)
        for key in ("network", "nat_network"):
            if vif.get(key) in (None, ""):
                vif.pop(key, None)
                continue
            if not isinstance(vif[key], str):
                raise InvalidParameter(f"vif {name!r}: {key} must be an id nw-...")
            Network.by_cuuid(session, _cuuid(vif[key], "nw", f"vif {name!r} {key}"))
        if vif.get("network_group") in (None, ""):
            vif.pop("network_group", None)
        else:
            group = vif["network_group"]
            if not isinstance(group, str):
                raise InvalidParameter(f"vif {name!r}: network_group must be an id nwg-...")
            found = NetworkGroup.find_cuuid(session, _cuuid(group, "nwg",
                                                            f"vif {name!r} network_group"))
            if found is None:
                raise UnknownNetworkID(f"unknown network group {group}")
        if "security_groups" in vif:
            vif["security_groups"] = _group_ids(vif["security_groups"],
                                                f"vif {name!r} security_groups")
        for key, net_key in (("ipv4_addr", "network"), ("nat_ipv4_addr", "nat_network")):
            if vif.get(key) not in (None, "") and net_key not in vif:
                raise InvalidParameter(f"vif {name!r}: {key} needs {net_key}")
        out[name] = vif
    try:  # device indexes as placement will read them (numbers, each used once)
        network.plan_request_vifs(out)
    except NetworkSchedulingError as exc:
        raise InvalidParameter(exc.message) from None
    network.check_manual_addresses(session, out)
    return out


def _check_groups_exist(session: Session, group_ids: list[str]) -> None:
    for group_id in dict.fromkeys(group_ids):
        SecurityGroup.by_cuuid(session, group_id)


def _check_volumes(session: Session, value: Any) -> list[VolumeSpec]:
    if value is None:
        return []
    entries = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    specs = []
    for key, entry in entries:
        where = f"volumes[{key!r}]"
        if not isinstance(entry, dict):
            raise InvalidParameter(f"{where} must be a map")
        unknown = sorted(set(entry) - VOLUME_KEYS)
        if unknown:
            raise InvalidParameter(f"{where}: unknown key(s) {', '.join(unknown)}")
        kind = entry.get("volume_type")
        if kind not in ("local", "shared"):
            raise InvalidParameter(f"{where}.volume_type must be 'local' or 'shared', "
                                   f"got {kind!r:.20}")
        bo_id = entry.get("backup_object_id")
        size = None
        if bo_id is not None:
            if not isinstance(bo_id, str):
                raise InvalidParameter(f"{where}.backup_object_id must be an id bo-...")
            bo = BackupObject.by_cuuid(session, _cuuid(bo_id, "bo", f"{where}.backup_object_id"))
            if bo.deleted_at is not None:
                raise BackupObject.not_found(f"backup object {bo_id} is deleted")
            size = bo.size
        if entry.get("size") is not None:
            size = _size_bytes(entry["size"], f"{where}.size")
        if not size:
            raise InvalidParameter(f"{where} needs a size or a backup_object_id")
        name = entry.get("display_name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise InvalidParameter(f"{where}.display_name must be text of up to 255 characters")
        specs.append(VolumeSpec(size=size, local=kind == "local", backup_object_id=bo_id,
                                display_name=name))
    return specs


def _check_hostname_free(session: Session, account_id: str, hostname: str) -> None:
    taken = session.scalar(select(HostnameLease.id).where(
        HostnameLease.account_id == account_id, HostnameLease.hostname == hostname))
    if taken is not None:
        raise InvalidParameter(f"hostname {hostname!r} is already used in account {account_id}")


# --- instances ------------------------------------------------------------------------------

def create_instance(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A new instance and its volumes in ``scheduling``, its placement job queued."""
    req = check_instance_request(session, params)
    with session.begin_nested():
        inst = _write_instance(session, req)
    return _instance_document(session, inst)


def _write_instance(session: Session, req: InstanceRequest) -> Instance:
    image = req.image
    bo = (BackupObject.find_cuuid(session, image.backup_object_id)
          if image.backup_object_id else None)
    inst = Instance(
        account_id=req.account_id, image_id=image.id, state="scheduling", status="init",
        hypervisor=req.hypervisor, cpu_cores=req.cpu_cores, memory_size=req.memory_size,
        quota_weight=float(req.params.get("quota_weight", 0.0)),
        user_data=req.params.get("user_data", ""), ha_enabled=req.ha_enabled,
        display_name=req.params.get("display_name"), service_type=req.service_type,
        ssh_key_pair_id=req.ssh_key_pair.id if req.ssh_key_pair else None,
        request_params=req.params)
    session.add(inst)
    session.flush()
    inst.hostname = req.hostname or inst.uuid
    _lease_hostname(session, inst)
    boot = _add_volume(session, inst, VolumeSpec(
        size=bo.size if bo is not None else 0, local=image.is_local_boot,
        backup_object_id=image.backup_object_id))
    inst.boot_volume_id = boot.canonical_uuid
    for spec in req.volumes:
        _add_volume(session, inst, spec)
    session.add(InstanceMonitorAttr(instance_id=inst.id))
    session.flush()
    if req.host is not None:
        host_node.assign_explicit_host(session, inst, req.host)
    if any(key in vif for vif in req.vifs.values() for key in MANUAL_ADDRESS_KEYS):
        network.create_vifs(session, inst, req.service_type)  # hold them from now on
    outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_INSTANCE,
                       inst.canonical_uuid, resource_id=inst.canonical_uuid)
    return inst


def _lease_hostname(session: Session, inst: Instance) -> None:
    try:
        with session.begin_nested():  # a concurrent request may have taken it meanwhile
            session.add(HostnameLease(account_id=inst.account_id or "", hostname=inst.hostname))
            session.flush()
    except IntegrityError:
        raise InvalidParameter(f"hostname {inst.hostname!r} is already used in account "
                               f"{inst.account_id}") from None


def _add_volume(session: Session, inst: Instance | None, spec: VolumeSpec,
                account_id: str | None = None, service_type: str | None = None) -> Volume:
    vol = Volume(account_id=inst.account_id if inst else account_id, size=spec.size,
                 state="scheduling", instance_id=inst.id if inst else None,
                 volume_type=LOCAL if spec.local else None,
                 backup_object_id=spec.backup_object_id, display_name=spec.display_name,
                 service_type=inst.service_type if inst else service_type)
    session.add(vol)
    session.flush()
    return vol


def _locked_instance(session: Session, instance_id: str) -> Instance:
    return Instance.by_cuuid(session, instance_id, for_update=True)


def _require_state(inst: Instance, wanted: str, action: str) -> None:
    if inst.state != wanted:
        raise InvalidInstanceState(f"cannot {action} {inst.canonical_uuid}: it is {inst.state}, "
                                   f"not {wanted}")


def _hva_queue(inst: Instance, action: str) -> str:
    host = inst.host_node
    if host is None or not host.node_id:
        raise InvalidInstanceState(f"cannot {action} {inst.canonical_uuid}: no host runs it")
    return wire.node_queue(wire.HVA_HANDLE, host.node_id)


def start_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """A stopped instance goes back to ``scheduling``: it is placed again (maybe elsewhere)."""
    inst = _locked_instance(session, instance_id)
    _require_state(inst, "stopped", "start")
    inst.state = "scheduling"
    inst.placement_error = None
    outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_START_INSTANCE,
                       inst.canonical_uuid, resource_id=inst.canonical_uuid)
    return _instance_document(session, inst)


def stop_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """A running instance is stopped by its host's agent; its addresses are given back now
    (a stopped instance holds no IP; the agent's report frees its host)."""
    inst = _locked_instance(session, instance_id)
    _require_state(inst, "running", "stop")
    queue = _hva_queue(inst, "stop")
    now = utcnow()
    for vif in inst.network_vifs:
        for lease in vif.ip_leases:
            teardown.release_ip_lease(session, lease, now)
    outbox.jobs.submit(session, queue, wire.HvaJob.STOP, inst.canonical_uuid,
                       resource_id=inst.canonical_uuid)
    return _instance_document(session, inst)


# States in which no agent holds the instance: terminated here, at once.
TERMINATE_HERE = ("init", "scheduling", "stopped")
# States in which the agent is already finishing it: a repeat sends nothing.
TERMINATING = ("shuttingdown", "terminated")


def terminate_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """Terminate an instance, whatever its state.

    Unlike the original (which refused it), an instance in ``scheduling`` is terminated:
    its pending placement is cancelled (the placement job then finds it terminated and
    changes nothing) and whatever it held (explicit host, manual addresses) is freed. A
    stopped one is terminated here too. Any other live instance gets ``terminate`` on its
    host's ``hva-handle`` queue; the agent reports ``shuttingdown`` then ``terminated``.
    """
    inst = _locked_instance(session, instance_id)
    if inst.state in TERMINATING:
        return _instance_document(session, inst)
    if inst.state in TERMINATE_HERE or inst.host_node is None:
        teardown.finalize_instance(session, inst)
        capacity.release_host(session, inst)
    else:
        outbox.jobs.submit(session, _hva_queue(inst, "terminate"), wire.HvaJob.TERMINATE,
                           inst.canonical_uuid, resource_id=inst.canonical_uuid)
    return _instance_document(session, inst)


def _fresh_document(session: Session, row: Any, query: Select,
                    build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The document of a row just written, read back with everything it shows."""
    session.flush()
    session.expire(row)
    model = type(row)
    loaded = session.scalars(query.where(model.id == row.id)
                             .execution_options(populate_existing=True)).one()
    return build(loaded)


def _shown_document(session: Session, model: Any, cuuid: str, query: Select,
                    build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The document of the row ``cuuid`` (its typed unknown-id error when there is none)."""
    raw = ids.raw_part(cuuid, model.prefix)
    row = session.scalars(query.where(model.uuid == raw)).first()
    if row is None:
        raise model.not_found(f"unknown id '{cuuid}'")
    return build(row)


def _instance_document(session: Session, inst: Instance) -> dict[str, Any]:
    return _fresh_document(session, inst, instances_query(), instance_api_document)


def show_instance(session: Session, instance_id: str) -> dict[str, Any]:
    return _shown_document(session, Instance, instance_id, instances_query(),
                           instance_api_document)


def _limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise InvalidArgument("limit must be within 1..1000")
    return limit


def list_instances(session: Session, state: str | None = None, account_id: str | None = None,
                   include_terminated: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; terminated ones only when asked for (or by ``state``)."""
    stmt = instances_query().order_by(Instance.id.desc()).limit(_limit(limit))
    if state:
        stmt = stmt.where(Instance.state == state)
    elif not include_terminated:
        stmt = stmt.where(Instance.terminated_at.is_(None))
    if account_id:
        stmt = stmt.where(Instance.account_id == account_id)
    return [instance_api_document(i) for i in session.scalars(stmt).unique()]


# --- volumes --------------------------------------------------------------------------------

def create_volume(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A standalone (shared) volume: placed by the scheduler, or on the storage node named."""
    if not isinstance(params, dict):
        raise InvalidParameter("the request must be a map of parameters")
    p = _present(params, VOLUME_PARAMS, "volume")
    cfg = config.scheduler_config()
    bo_id = p.get("backup_object_id")
    if bo_id is not None:
        bo = BackupObject.by_cuuid(session, _cuuid(bo_id, "bo", "backup_object_id"))
        if bo.deleted_at is not None:
            raise BackupObject.not_found(f"backup object {bo_id} is deleted")
        size = bo.size
    elif "volume_size" in p:
        low, high = cfg.create_volume_min_size, cfg.create_volume_max_size
        size = _in_range(p, "volume_size", (low, high)) * MB
    else:
        raise InvalidParameter("volume_size (MB) or backup_object_id is required")
    service_type = cfg.service_type(p.get("service_type") or None).name
    account_id = _cuuid(p.get("account_id", DEFAULT_ACCOUNT), "a", "account_id")
    _fits("volume", Volume, {k: p[k] for k in ("display_name",) if k in p})
    node = None
    if "storage_node_id" in p:
        node = StorageNode.by_cuuid(session, _cuuid(p["storage_node_id"], "sn",
                                                    "storage_node_id"))
        if node.status != "online":
            raise InvalidParameter(f"storage node {p['storage_node_id']} is {node.status}, "
                                   "not online")
    elif not capacity.domain_storage_capacity(session, size):
        raise OutOfDiskSpace(f"the online storage nodes together lack {size} bytes")

    with session.begin_nested():
        vol = _add_volume(session, None, VolumeSpec(size=size, local=False,
                                                    backup_object_id=bo_id,
                                                    display_name=p.get("display_name")),
                          account_id=account_id, service_type=service_type)
        vol.request_params = p
        if node is None:
            outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_VOLUME,
                               vol.canonical_uuid, resource_id=vol.canonical_uuid)
        else:
            _place_volume_on(session, vol, node)
    return _volume_document(session, vol)


def _place_volume_on(session: Session, vol: Volume, node: StorageNode) -> None:
    """The operator's choice of storage node: its space claimed atomically (the original
    checked nothing), the device row made, and the volume created there."""
    if not capacity.claim_storage(session, node.id, vol):
        raise OutOfDiskSpace(f"storage node {node.canonical_uuid} lacks {vol.size} bytes")
    storage_node.associate(session, vol, StorageCandidate(
        id=node.id, uuid=node.canonical_uuid, node_id=node.node_id,
        storage_type=node.storage_type, online=True,
        offering_disk_bytes=node.offering_disk_space_mb * MB))
    vol.state = "pending"
    outbox.jobs.submit(session, wire.node_queue(wire.STA_HANDLE, node.node_id),
                       wire.StaJob.CREATE_VOLUME, vol.canonical_uuid,
                       resource_id=vol.canonical_uuid)


def _volume_document(session: Session, vol: Volume) -> dict[str, Any]:
    return _fresh_document(session, vol, volumes_query(), volume_api_document)


def show_volume(session: Session, volume_id: str) -> dict[str, Any]:
    return _shown_document(session, Volume, volume_id, volumes_query(), volume_api_document)


def list_volumes(session: Session, state: str | None = None, account_id: str | None = None,
                 include_deleted: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; deleted ones only when asked for (or by ``state``)."""
    stmt = volumes_query().order_by(Volume.id.desc()).limit(_limit(limit))
    if state:
        stmt = stmt.where(Volume.state == state)
    elif not include_deleted:
        stmt = stmt.where(Volume.deleted_at.is_(None))
    if account_id:
        stmt = stmt.where(Volume.account_id == account_id)
    return [volume_api_document(v) for v in session.scalars(stmt).unique()]
