"""A varied world and the answer documents read from it, pinned as golden JSON files.

The world holds what the documents branch on: NAT, released leases, deleted vifs, a vif
without a network, volumes of each kind (local, iSCSI, NFS, never placed, deleted), labels,
backup objects, an SSH key, several vifs and security groups, network services, vif
monitors (one deleted), a VLAN, an offline host, alarms, and a terminated instance.

``documents(session)`` answers every pinned call on that world as JSON text exactly as it
is built (keys in their order), with the values that differ between runs normalised: ids
(``i-#3``; the bare 8-character part as ``#3``) numbered by first appearance, and times
that are not fixed by the world (``created_at``, ``updated_at``, ...) as ``<now>``.
Integer primary keys are kept: the world is built in an empty database.

Regenerate the files after a deliberate change of a document:
``python -m tests.golden_world`` (writes ``tests/golden/*.json``).
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from collector import ids, sample_data
from collector.models import (
    ISCSI,
    LOCAL,
    NFS,
    NetworkService,
    NetworkVifMonitor,
    ResourceLabel,
    SecurityGroupReference,
    SshKeyPair,
    VlanLease,
    VolumeSnapshot,
)
from collector.services import alarm, hva, hva_netfilter, hva_network, instance_lifecycle, sta

GOLDEN_DIR = Path(__file__).parent / "golden"
FIXED = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)  # times the world sets itself
FIXED_WHOLE = datetime(2001, 2, 3, 4, 5, 7, tzinfo=UTC)  # no fraction: isoformat drops it


def build(session: Session) -> dict[str, Any]:
    """The world, in an empty database; returns the ids the pinned calls take."""
    sample_data._mac_suffixes = itertools.count(0x10_0000)  # deterministic MAC addresses
    host = sample_data.host_node(session, node_id="hva.golden1")
    offline = sample_data.host_node(session, node_id="hva.golden2", online=False)
    iscsi = sample_data.storage_node(session, node_id="sta.golden-iscsi")
    nfs = sample_data.storage_node(session, node_id="sta.golden-nfs", storage_type=NFS)
    dc = sample_data.dc_network(session, "dc-golden")
    session.add(VlanLease(tag_id=100, dc_network_id=dc.id, account_id="a-shpoolxx"))
    inside = sample_data.network(session, "10.40.0.0/24", dc=dc, description="inside")
    outside = sample_data.network(session, "172.16.8.0/24", dc=sample_data.dc_network(
        session, "dc-outside"))
    plain = sample_data.network(session, "10.41.0.0/24", dc_network_id=None,
                                dns_server=None, metadata_server_port=None)
    ssh = SshKeyPair(account_id="a-shpoolxx", finger_print="aa:bb", public_key="ssh-rsa AAAA",
                     description=None, display_name="golden key")
    session.add(ssh)
    session.flush()

    storage = sample_data.backup_storage(session)
    image_bo = sample_data.backup_object(session, storage, display_name="image object")
    image = sample_data.image(session, backup_object=image_bo, description=None,
                              features={"virtio": True}, root_device="uuid:abc")
    bare_image = sample_data.image(session, backup_object_id=None, local=False)
    source_bo = sample_data.backup_object(session, storage, description="source",
                                          allocation_size=1234)

    groups = [sample_data.security_group(session, rule=rule, description=desc)
              for rule, desc in (("tcp:22,22,ip4:0.0.0.0", "ssh"),
                                 ("tcp:80,80,ip4:0.0.0.0\nudp:53,53,ip4:10.0.0.0/8", None),
                                 ("icmp:-1,-1,ip4:0.0.0.0", "ping"))]
    session.add(SecurityGroupReference(referencer_id=groups[0].id, referencee_id=groups[1].id))

    # The main instance: NAT, several vifs (one deleted, one without a network), every kind
    # of volume, an SSH key, labels.
    main = sample_data.instance(session, host, image, ssh_key_pair_id=ssh.id,
                                display_name="main", runtime_config={"vnc": 5901},
                                request_params={"a": [1, 2]}, encrypted_password=None,
                                password_will_be_deleted_at=FIXED, quota_weight=1.5,
                                hostname="main")
    nat_vif = sample_data.vif(session, main, inside, ipv4="10.40.0.10",
                              security_groups=[groups[0], groups[1]], device_index=0,
                              nat_network_id=outside.id)
    sample_data.lease_ip(session, nat_vif, outside, "172.16.8.20")
    released = sample_data.vif(session, main, inside, ipv4="10.40.0.11",
                               security_groups=[groups[2]], device_index=1)
    instance_lifecycle.release_ip_lease(session, released.ip_leases[0], FIXED)
    sample_data.lease_ip(session, released, inside, "10.40.0.12")
    gone = sample_data.vif(session, main, inside, ipv4="10.40.0.13", device_index=2)
    instance_lifecycle.destroy_vif(session, gone)
    gone.deleted_at = FIXED
    sample_data.vif(session, main, None, device_index=3)
    sample_data.vif(session, main, plain, ipv4="10.41.0.5", device_index=4)
    session.add_all([
        NetworkVifMonitor(network_vif_id=nat_vif.id, title="http", params={"port": 80}),
        NetworkVifMonitor(network_vif_id=nat_vif.id, title="old", deleted_at=FIXED),
        NetworkVifMonitor(network_vif_id=released.id, enabled=False, title=None),
    ])
    boot = sample_data.volume(session, main, LOCAL, boot=True, display_name="boot",
                              attached_at=FIXED_WHOLE)
    sample_data.volume(session, main, ISCSI, node=iscsi, guest_device_name="vdb",
                       backup_object_id=source_bo.canonical_uuid)
    sample_data.volume(session, main, NFS, node=nfs, guest_device_name="vdc",
                       request_params={"size": "10G"})
    sample_data.volume(session, main, None, state="scheduling")
    dropped = sample_data.volume(session, main, NFS, node=nfs, guest_device_name="vdd")
    dropped.destroy(FIXED)
    session.add_all([
        ResourceLabel(resource_uuid=main.canonical_uuid, name="role", string_value="web"),
        ResourceLabel(resource_uuid=main.canonical_uuid, name="blob", value_type=2,
                      blob_value=None),
        ResourceLabel(resource_uuid=image.canonical_uuid, name="os", string_value="debian"),
        ResourceLabel(resource_uuid=boot.canonical_uuid, name="tier", string_value="gold"),
        ResourceLabel(resource_uuid=source_bo.canonical_uuid, name="kept", string_value="yes"),
    ])

    # A neighbour on the same network with services, and a vif of no instance.
    neighbour = sample_data.instance(session, host, image, state="halting", status="offline",
                                     hostname="neighbour")
    dns_vif = sample_data.vif(session, neighbour, inside, ipv4="10.40.0.30",
                              security_groups=[groups[0]], nat_network_id=outside.id)
    sample_data.lease_ip(session, dns_vif, outside, "172.16.8.30")
    loose = sample_data.vif(session, None, inside, ipv4="10.40.0.31")
    session.add_all([
        NetworkService(network_vif_id=dns_vif.id, name="dns", incoming_port=53),
        NetworkService(network_vif_id=loose.id, name="gateway", outgoing_port=8080),
        NetworkService(network_vif_id=nat_vif.id, name="metadata", incoming_port=80,
                       outgoing_port=9000),
    ])

    # Terminated (through the real cascade), never placed, on an offline host, starting.
    doomed = sample_data.running_instance(session, host, storage=iscsi, net=inside,
                                          ipv4="10.40.0.40")
    doomed.hostname = "doomed"
    instance_lifecycle.destroy_instance(session, doomed, FIXED)
    unplaced = sample_data.instance(session, None, bare_image, state="scheduling",
                                    status="init", hostname="unplaced")
    away = sample_data.instance(session, offline, image, hostname="away")
    sample_data.vif(session, away, inside, ipv4="10.40.0.50")
    starting = sample_data.instance(session, host, image, state="starting", hostname="starting")
    sample_data.vif(session, starting, plain, ipv4="10.41.0.6", security_groups=[groups[2]])

    loose_volume = sample_data.volume(session, None, ISCSI, node=iscsi, state="available")
    snapshot = VolumeSnapshot(account_id="a-shpoolxx", storage_node_id=iscsi.id,
                              origin_volume_id=loose_volume.canonical_uuid, size=5,
                              destination_key=None)
    session.add(snapshot)
    alarms = [
        sample_data.alarm(session, main),
        sample_data.alarm(session, main, "cpu.usage", description="hot"),
        sample_data.alarm(session, main, "memory.usage", deleted_at=FIXED),
        sample_data.alarm(session, neighbour, "disk.usage", enabled=False),
        sample_data.alarm(session, away, "log"),
    ]
    session.flush()
    vifs = [nat_vif, released, gone, dns_vif, loose]
    vifs += [v for inst in (main, doomed, away, starting) for v in inst.network_vifs]
    volumes = [v for inst in (main, doomed) for v in inst.volumes] + [loose_volume]
    return {
        "instances": [i.canonical_uuid for i in (main, neighbour, doomed, unplaced, away,
                                                 starting)],
        "vifs": list(dict.fromkeys(v.canonical_uuid for v in vifs)),
        "volumes": list(dict.fromkeys(v.canonical_uuid for v in volumes)),
        "networks": [n.canonical_uuid for n in (inside, outside, plain)],
        "groups": [g.canonical_uuid for g in groups],
        "others": [groups[0].canonical_uuid, inside.canonical_uuid, main.canonical_uuid,
                   ssh.canonical_uuid],
        "nodes": [host.node_id, offline.node_id],
        "storage_nodes": [iscsi.node_id, nfs.node_id],
        "alarms": [a.canonical_uuid for a in alarms],
        "images": [image.canonical_uuid, bare_image.canonical_uuid],
        "backup_objects": [image_bo.canonical_uuid, source_bo.canonical_uuid],
        "snapshot": snapshot.canonical_uuid,
    }


def calls(world: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Golden file name -> the calls whose answers it pins (function, arguments...)."""
    return {
        "get_instance": [(hva.get_instance, i) for i in world["instances"]],
        "get_volume": [(sta.get_volume, v) for v in world["volumes"]],
        "get_nic": [(hva_network.get_nic, v) for v in world["vifs"] + world["others"]],
        "get_network": [(hva_network.get_network, n) for n in world["networks"]]
        + [(hva_network.get_networks,)],
        "monitor": [(f, n) for n in world["nodes"] for f in (
            hva_network.get_instance_monitor_data, hva_network.get_resource_monitor_data,
            hva_network.get_resource_monitor_ids)],
        "alarm": [(alarm.get_alarm, a) for a in world["alarms"]]
        + [(alarm.get_alarms, world["alarms"][::-1]),
           (alarm.get_resource_alarms, world["instances"]),
           (alarm.get_resource_alarms, world["instances"][0])]
        + [(alarm.get_log_alarms, n) for n in world["nodes"]],
        "sta": [(sta.get_available_volumes, n) for n in world["storage_nodes"]]
        + [(sta.get_image, i) for i in world["images"]]
        + [(sta.get_backup_object, b) for b in world["backup_objects"]]
        + [(sta.get_snapshot, world["snapshot"])],
        "netfilter": [(hva_netfilter.get_netfilter_data, n) for n in world["nodes"]]
        + [(hva_network.get_dhcp_conf, n) for n in world["networks"]]
        + [(hva_netfilter.get_security_groups_of_vnic, v) for v in world["vifs"][:2]]
        + [(hva_netfilter.get_netfilter_security_group, g, world["nodes"][0])
           for g in world["groups"]],
    }


_PREFIXES = "|".join(sorted(ids.PREFIXES, key=len, reverse=True))
_CANONICAL = re.compile(rf"\b({_PREFIXES})-([a-z0-9]{{8}})\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def normalise(text: str) -> str:
    """Ids numbered by first appearance (bare 8-character parts too); run-dependent times
    as ``<now>`` (times of the world, in 2001, are kept)."""
    numbers: dict[str, int] = {}
    for match in _CANONICAL.finditer(text):
        numbers.setdefault(match.group(2), len(numbers) + 1)
    if numbers:
        raw = re.compile(rf"\b({'|'.join(map(re.escape, numbers))})\b")
        text = raw.sub(lambda m: f"#{numbers[m.group(1)]}", text)
    return _TIME.sub(lambda m: m.group(0) if m.group(0).startswith("2001-") else "<now>", text)


def documents(session: Session, world: dict[str, Any]) -> dict[str, str]:
    """Golden file name -> the normalised JSON of its calls' answers, one per line."""
    out = {}
    for name, pinned in calls(world).items():
        lines = []
        for fn, *args in pinned:
            session.expire_all()  # each call reads the database, as a fresh worker would
            answer = fn(session, *args)
            lines.append(json.dumps({"call": fn.__name__, "args": args, "answer": answer}))
        out[name] = normalise("\n".join(lines)) + "\n"
    return out


def write_golden(url: str | None = None) -> None:
    """Build the world in an empty SQLite database and write ``tests/golden/*.json``."""
    import tempfile

    from collector.db import unit_of_work
    from collector.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{tmp}/golden.sqlite3"
        upgrade(url)
        with unit_of_work(url) as session:
            texts = documents(session, build(session))
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, text in texts.items():
        (GOLDEN_DIR / f"{name}.json").write_text(text)
        print(f"wrote {GOLDEN_DIR / name}.json ({len(text)} bytes)")


if __name__ == "__main__":
    write_golden()
