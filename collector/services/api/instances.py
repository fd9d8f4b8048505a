"""``api``: the original REST API's side of instances (scheduler spec 1.8).

create_instance(params) -> instance document in ``scheduling``; job ``scheduler.schedule_instance``
create_instances(params, count, min_count=None) -> [instance document] in ``scheduling``; one
    job ``scheduler.schedule_launch``: at least ``min_count`` placed, or none
start_instance(instance_id) -> document; only from ``stopped``: ``scheduling`` and job
    ``scheduler.schedule_start_instance``
stop_instance(instance_id) -> document; only from ``running``: ``hva-handle.<node>`` gets
    ``stop``; the instance keeps its IP leases until its agent reports it ``stopped``
terminate_instance(instance_id) -> document; an instance an agent runs gets ``terminate`` on
    ``hva-handle.<node>``; one no agent holds (``scheduling``: its placement is cancelled,
    ``stopped``) is terminated at once; a repeat changes nothing
migrate_instance(instance_id, host_node_id=None) -> document in ``migrating``; only from
    ``running``: the destination (the named host, else the host strategy's best other host)
    claimed now, ``run_migration`` sent to ``migration-handle.<dest>``; the instance runs on
    the source until the destination's agent reports the switch
    (``collector.scheduling.migration``)
list_instances / show_instance -> documents (``documents.api_views``)

Every function runs in the caller's transaction. ``create_instance`` checks the request
whole before anything is written: first its shape (``requests.InstanceRequest``: what a
request may contain), then what it names in the database. The writes happen in a savepoint:
a refused request (a typed error) leaves nothing behind, even inside a longer transaction.
Jobs go to the ledger and the outbox in the same transaction and are sent after the commit.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from collector import ids, wire
from collector.db import (
    any_of,
    dialect_name,
    insert_all_if_absent,
    insert_now,
    insert_objects_now,
    outbox,
)
from collector.documents.api_views import instance_api_document, instances_query
from collector.errors import (
    InvalidInstanceState,
    InvalidParameter,
    OutOfHostCapacity,
    UnknownImageID,
    UnknownNetworkID,
)
from collector.models import (
    BackupObject,
    HostnameLease,
    Image,
    Instance,
    InstanceMonitorAttr,
    Network,
    NetworkGroup,
    PlacementGroup,
    SecurityGroup,
    SshKeyPair,
    Volume,
)
from collector.scheduling import capacity, migration, placement, placement_config, teardown
from collector.scheduling.batch import LAUNCH_KEY
from collector.scheduling.vifs import check_manual_addresses, create_vifs
from collector.services.api.placement_groups import live_group
from collector.services.api.requests import InstanceRequest, LaunchRequest, VolumeParams
from collector.services.api.rows import (
    VolumeSpec,
    add_volume,
    fresh_document,
    fresh_documents,
    listed_documents,
    live_backup_object,
    shown_document,
)

MANUAL_ADDRESS_KEYS = ("mac_addr", "ipv4_addr", "nat_ipv4_addr")


# --- create ---------------------------------------------------------------------------------

@dataclass
class NewInstance:
    """A request that passed every check, with the rows and values its lookups found."""

    request: InstanceRequest
    image: Image
    boot_size: int  # the boot volume's: the image's backup object's size (0: none)
    service_type: str
    volumes: list[VolumeSpec]
    ssh_key_pair: SshKeyPair | None
    placement_group: PlacementGroup | None = None


def create_instance(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A new instance and its volumes in ``scheduling``, its placement job queued."""
    new = _checked(session, InstanceRequest.from_params(params))
    with _undone_if_refused(session, new.request):
        [inst] = _write_instances(session, new)
        outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_INSTANCE,
                           inst.canonical_uuid, resource_id=inst.canonical_uuid, at_once=True)
    return _written_documents(session, [inst], new)[0]


def create_instances(session: Session, params: dict[str, Any], count: int,
                     min_count: int | None = None) -> list[dict[str, Any]]:
    """A bulk launch: ``count`` (1..1000) instances of one request in ``scheduling``, one
    ``schedule_launch`` job placing them in batches, at least ``min_count`` (1..count,
    default ``count``) or none (each then ``terminated`` with the typed reason). Answers
    their documents, in order. The request is checked as ``create_instance`` checks it,
    once; a hostname or manual addresses need ``count`` 1. A refusal writes nothing."""
    request = InstanceRequest.from_params(params)
    launch = LaunchRequest.from_params({"count": count, "min_count": min_count})
    if launch.count > 1 and (request.hostname is not None or _manual_addresses(request)):
        raise InvalidParameter("hostname and manual addresses (mac_addr, ipv4_addr, "
                               "nat_ipv4_addr) name one instance: they need count 1")
    new = _checked(session, request)
    with _undone_if_refused(session, request):
        insts = _write_instances(session, new, launch.count, launch=True)
        outbox.jobs.submit(session, wire.SCHEDULER, wire.SchedulerJob.SCHEDULE_LAUNCH,
                           [inst.canonical_uuid for inst in insts], launch.fewest,
                           resource_id=insts[0].canonical_uuid, at_once=True)
    return _written_documents(session, insts, new)


def _undone_if_refused(session: Session, request: InstanceRequest) -> Any:
    """A savepoint around the writes of a request that can still be refused once they
    began (a named host without room, a manual address taken meanwhile), so that the
    refusal leaves nothing behind; any other request is refused, if at all, by its
    hostname's insert, which then wrote nothing, and pays no savepoint."""
    if request.explicit_host is not None or _manual_addresses(request):
        return session.begin_nested()
    return nullcontext()


def _manual_addresses(request: InstanceRequest) -> bool:
    return any(key in vif for vif in request.vif_params.values() for key in MANUAL_ADDRESS_KEYS)


def _checked(session: Session, request: InstanceRequest) -> NewInstance:
    """What the request names, looked up and checked; nothing written."""
    image, boot_size, host_fits, networks_found = _image_and_room(session, request)
    _check_hosts_can_run(session, request, host_fits)
    service_type = placement_config.scheduler_config().service_type(
        request.service_type or image.service_type or None).name
    _check_vif_references(session, request.vif_params, networks_found)
    for group_id in request.security_group_ids:
        SecurityGroup.by_cuuid(session, group_id)
    volumes = [_volume_spec(session, key, volume) for key, volume in request.volumes.items()]
    if request.hostname is not None:
        _check_hostname_free(session, request.account_id, request.hostname)
    ssh_key = _live_ssh_key(session, request.ssh_key_id) if request.ssh_key_id else None
    group = (live_group(session, request.placement_group, request.account_id)
             if request.placement_group else None)
    return NewInstance(request, image, boot_size, service_type, volumes, ssh_key, group)


# The size of the backup object an image boots from, read with the image (its id is the
# canonical ``bo-...``; the table holds the part after the prefix).
_BOOT_SIZE = select(BackupObject.size).where(
    BackupObject.uuid == func.substr(Image.backup_object_id, len(BackupObject.prefix) + 2)
).correlate(Image).scalar_subquery()


def _image_and_room(session: Session, request: InstanceRequest
                    ) -> tuple[Image, int, bool, bool]:
    """The image, available, its boot volume's size (its backup object's; 0 without one),
    whether some host has room for the request (``capacity.some_host_fits_clause``) and
    whether every network its vifs name exists: one read."""
    image_id = request.image_id
    networks = {ids.raw_part_or_none(network, Network.prefix)  # malformed: refused later
                for network in _networks_named(request.vif_params)}
    row = session.execute(_image_and_room_statement(session), {
        "image_uuid": ids.raw_part(image_id, Image.prefix), "networks": list(networks - {None}),
        **capacity.some_host_fits_params(request.hypervisor, request.cpu_cores,
                                         request.memory_size)}).first()
    if row is None:
        raise Image.not_found(f"unknown id '{image_id}'")
    image, boot_size, host_fits, networks_found = row
    if image.deleted_at is not None:
        raise UnknownImageID(f"image {image_id} is deleted")
    if image.state != "available":
        raise InvalidParameter(f"image {image_id} is {image.state}, not available")
    return image, boot_size or 0, bool(host_fits), networks_found == len(networks)


# ``_image_and_room``'s statement, built once per dialect and host-fit clause, its values
# bound at each call: built anew at each call, it cost more to key for the compiled cache
# (a walk of the whole statement) than to run.
_IMAGE_AND_ROOM: dict[tuple[str, Any], Any] = {}


def _image_and_room_statement(session: Session) -> Any:
    fits = capacity.some_host_fits_clause()
    dialect = dialect_name(session)
    stmt = _IMAGE_AND_ROOM.get((dialect, fits))
    if stmt is None:
        found = select(func.count(Network.id)).where(
            any_of(Network.uuid, "networks", dialect)).scalar_subquery()
        stmt = _IMAGE_AND_ROOM[(dialect, fits)] = select(Image, _BOOT_SIZE, fits, found).where(
            Image.uuid == bindparam("image_uuid"))
    return stmt


def _networks_named(vifs: dict[str, dict[str, Any]]) -> list[Any]:
    return [vif[key] for vif in vifs.values() for key in ("network", "nat_network") if key in vif]


def _check_hosts_can_run(session: Session, request: InstanceRequest, host_fits: bool) -> None:
    """Some online host accepting placements has the hypervisor; together they have room.
    One host with room for the request answers both (``host_fits``: the common case, read
    with the image); only otherwise is the fleet summed."""
    if host_fits:
        return
    if not capacity.hypervisor_available(session, request.hypervisor):
        raise InvalidParameter(f"no online host accepting placements has hypervisor "
                               f"{request.hypervisor!r}")
    if not capacity.domain_host_capacity(session, request.cpu_cores, request.memory_size):
        raise OutOfHostCapacity(f"the online hosts together lack {request.cpu_cores} cpu cores "
                                f"and {request.memory_size} MB of memory")


def _check_vif_references(session: Session, vifs: dict[str, dict[str, Any]],
                          networks_found: bool = False) -> None:
    """The networks (unless all were found with the image) and groups the vifs name exist;
    their manual addresses are free."""
    for vif in vifs.values():
        for key in ("network", "nat_network"):
            if key in vif and not networks_found:
                Network.by_cuuid(session, vif[key])
        group = vif.get("network_group")
        if group is not None and NetworkGroup.find_cuuid(session, group) is None:
            raise UnknownNetworkID(f"unknown network group {group}")
    check_manual_addresses(session, vifs)


def _volume_spec(session: Session, key: str | int, volume: VolumeParams) -> VolumeSpec:
    """The volume to create; without a size, its backup object's."""
    size = volume.size
    if volume.backup_object_id is not None:
        backup = live_backup_object(session, volume.backup_object_id)
        size = size or backup.size
    if not size:
        raise InvalidParameter(f"volumes[{key!r}] needs a size or a backup_object_id")
    return VolumeSpec(size=size, local=volume.volume_type == "local",
                      backup_object_id=volume.backup_object_id,
                      display_name=volume.display_name)


def _check_hostname_free(session: Session, account_id: str, hostname: str) -> None:
    taken = session.scalar(select(HostnameLease.id).where(
        HostnameLease.account_id == account_id, HostnameLease.hostname == hostname))
    if taken is not None:
        raise InvalidParameter(f"hostname {hostname!r} is already used in account {account_id}")


def _live_ssh_key(session: Session, ssh_key_id: str) -> SshKeyPair:
    key = SshKeyPair.by_cuuid(session, ssh_key_id)
    if key.deleted_at is not None:
        raise SshKeyPair.not_found(f"ssh key pair {ssh_key_id} is deleted")
    return key


def _write_instances(session: Session, new: NewInstance, count: int = 1,
                     launch: bool = False) -> list[Instance]:
    """``count`` instances of the request (of one bulk launch when ``launch``: each names
    the first), their volumes and hostnames: written together, one statement per table
    (a launch of 1,000 costs a few statements, not thousands)."""
    request, image = new.request, new.image
    uuids = [ids.new_uuid() for _ in range(count)]
    request_params = request.request_params(new.service_type, [asdict(v) for v in new.volumes])
    if launch:  # the re-drive pass finds the launch's job by its first instance
        request_params[LAUNCH_KEY] = ids.canonical(Instance.prefix, uuids[0])
    hostnames = [request.hostname or uuid for uuid in uuids]
    _lease_hostnames(session, request.account_id or "", hostnames)
    boot_uuids = [ids.new_uuid() for _ in uuids]
    insts = [Instance(
        uuid=uuid, hostname=hostname,
        account_id=request.account_id, image_id=image.id, state="scheduling", status="init",
        hypervisor=request.hypervisor, cpu_cores=request.cpu_cores,
        memory_size=request.memory_size, quota_weight=float(request.quota_weight),
        user_data=request.user_data, ha_enabled=int(request.ha_enabled),
        display_name=request.display_name, service_type=new.service_type,
        ssh_key_pair_id=new.ssh_key_pair.id if new.ssh_key_pair else None,
        placement_group_id=new.placement_group.id if new.placement_group else None,
        boot_volume_id=ids.canonical(Volume.prefix, boot_uuid),
        request_params=dict(request_params))
        for uuid, hostname, boot_uuid in zip(uuids, hostnames, boot_uuids, strict=True)]
    # Their ids, for the rows below: inserted at once, else by a flush (in a savepoint).
    if not insert_objects_now(session, insts):
        session.add_all(insts)
        session.flush()
    boot = VolumeSpec(size=new.boot_size, local=image.is_local_boot,
                      backup_object_id=image.backup_object_id)
    all_volumes = []
    for inst, boot_uuid in zip(insts, boot_uuids, strict=True):
        volumes = [add_volume(session, inst, boot, uuid=boot_uuid, add=False)]
        volumes += [add_volume(session, inst, spec, add=False) for spec in new.volumes]
        all_volumes += volumes
        # What its document shows, as written: no read back (``_written_documents``).
        set_committed_value(inst, "volumes", volumes)
        set_committed_value(inst, "image", image)
        set_committed_value(inst, "ssh_key_pair", new.ssh_key_pair)
    insert_now(session, InstanceMonitorAttr, [{"instance_id": inst.id} for inst in insts])
    if not insert_objects_now(session, all_volumes):
        session.add_all(all_volumes)
        session.flush()
    if request.explicit_host is not None:  # count 1: a named host or addresses are one's
        placement.assign_explicit_host(session, insts[0], request.explicit_host)
    if _manual_addresses(request):
        create_vifs(session, insts[0], new.service_type)  # hold them from now on
    return insts


def _lease_hostnames(session: Session, account_id: str, hostnames: list[str]) -> None:
    """One INSERT that takes the hostnames or finds one taken (a concurrent request may
    have taken it since the check): no savepoint to undo a refused row."""
    if len(insert_all_if_absent(session, HostnameLease, ["account_id", "hostname"], [
            {"account_id": account_id, "hostname": name} for name in hostnames])
            ) < len(hostnames):
        taken = hostnames[0] if len(hostnames) == 1 else "one of the launch's hostnames"
        raise InvalidParameter(f"hostname {taken!r} is already used in account "
                               f"{account_id}")


# --- start, stop, terminate -----------------------------------------------------------------

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
    """A running instance is stopped by its host's agent; its addresses and its host are
    given back when the agent reports it ``stopped`` (``hva-collector.update_instance``).

    Not here: it still runs until then, and a stop that fails leaves it running with them
    (released now, an address could go to a new instance while this one still uses it)."""
    inst = _locked_instance(session, instance_id)
    _require_state(inst, "running", "stop")
    queue = _hva_queue(inst, "stop")
    outbox.jobs.submit(session, queue, wire.HvaJob.STOP, inst.canonical_uuid,
                       resource_id=inst.canonical_uuid, generation=inst.placement_generation)
    return _instance_document(session, inst)


def migrate_instance(session: Session, instance_id: str,
                     host_node_id: str | None = None) -> dict[str, Any]:
    """Live-migrate a running instance: InvalidInstanceState unless ``running``; a named
    destination that is the source or disabled -> InvalidMigrationTarget, not online ->
    InvalidHostNodeID, another hypervisor or arch -> IncompatibleHostNode, too small ->
    OutOfHostCapacity; no other host takes it -> InsufficientCapacity or
    NoMatchingHostNode. A refusal writes nothing."""
    inst = _locked_instance(session, instance_id)
    _require_state(inst, "running", "migrate")
    migration.start(session, inst, host_node_id)
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
                           inst.canonical_uuid, resource_id=inst.canonical_uuid,
                           generation=inst.placement_generation)
    return _instance_document(session, inst)


# --- documents ------------------------------------------------------------------------------

def _written_documents(session: Session, insts: list[Instance],
                       new: NewInstance) -> list[dict[str, Any]]:
    """The documents of instances ``_write_instances`` just wrote, from the rows it holds in
    memory (their image, key and volumes set as written). Only a request that also wrote
    vifs (manual addresses) or named a host has them read back: the common request costs no
    read after its writes."""
    if new.request.explicit_host is not None or _manual_addresses(new.request):
        return fresh_documents(session, insts, instances_query(), instance_api_document)
    for inst in insts:
        set_committed_value(inst, "network_vifs", [])
        set_committed_value(inst, "host_node", None)
    return [instance_api_document(inst) for inst in insts]


def _instance_document(session: Session, inst: Instance) -> dict[str, Any]:
    return fresh_document(session, inst, instances_query(), instance_api_document)


def show_instance(session: Session, instance_id: str) -> dict[str, Any]:
    """The instance's API document (UnknownInstanceID when there is none)."""
    return shown_document(session, Instance, instance_id, instances_query(),
                          instance_api_document)


def list_instances(session: Session, state: str | None = None, account_id: str | None = None,
                   include_terminated: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; terminated ones only when asked for (or by ``state``)."""
    return listed_documents(session, Instance, instances_query(), instance_api_document,
                            Instance.terminated_at, state, account_id, include_terminated, limit)
