"""A varied world: what the answer documents branch on, built in an empty database.

The world holds what the documents branch on: NAT, released leases, deleted vifs, a vif
without a network, volumes of each kind (local, iSCSI, NFS, never placed, deleted), labels,
backup objects, an SSH key, several vifs and security groups, network services, vif
monitors (one deleted), a VLAN, an offline host, alarms, and a terminated instance.

The tests pin every document read from it as golden JSON files (``tests/support/golden.py``).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

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
from collector.scheduling import teardown
from workers.demo.world import make

FIXED = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)  # times the world sets itself
FIXED_WHOLE = datetime(2001, 2, 3, 4, 5, 7, tzinfo=UTC)  # no fraction: isoformat drops it


def build(session: Session) -> dict[str, Any]:
    """The world, in an empty database; returns the ids the pinned calls take."""
    make._mac_suffixes = itertools.count(0x10_0000)  # deterministic MAC addresses
    host = make.host_node(session, node_id="hva.golden1")
    offline = make.host_node(session, node_id="hva.golden2", online=False)
    iscsi = make.storage_node(session, node_id="sta.golden-iscsi")
    nfs = make.storage_node(session, node_id="sta.golden-nfs", storage_type=NFS)
    dc = make.dc_network(session, "dc-golden")
    session.add(VlanLease(tag_id=100, dc_network_id=dc.id, account_id="a-shpoolxx"))
    inside = make.network(session, "10.40.0.0/24", dc=dc, description="inside")
    outside = make.network(session, "172.16.8.0/24", dc=make.dc_network(
        session, "dc-outside"))
    plain = make.network(session, "10.41.0.0/24", dc_network_id=None,
                                dns_server=None, metadata_server_port=None)
    ssh = SshKeyPair(account_id="a-shpoolxx", finger_print="aa:bb", public_key="ssh-rsa AAAA",
                     description=None, display_name="golden key")
    session.add(ssh)
    session.flush()

    storage = make.backup_storage(session)
    image_bo = make.backup_object(session, storage, display_name="image object")
    image = make.image(session, backup_object=image_bo, description=None,
                              features={"virtio": True}, root_device="uuid:abc")
    bare_image = make.image(session, backup_object_id=None, local=False)
    source_bo = make.backup_object(session, storage, description="source",
                                          allocation_size=1234)

    groups = [make.security_group(session, rule=rule, description=desc)
              for rule, desc in (("tcp:22,22,ip4:0.0.0.0", "ssh"),
                                 ("tcp:80,80,ip4:0.0.0.0\nudp:53,53,ip4:10.0.0.0/8", None),
                                 ("icmp:-1,-1,ip4:0.0.0.0", "ping"))]
    session.add(SecurityGroupReference(referencer_id=groups[0].id, referencee_id=groups[1].id))

    # The main instance: NAT, several vifs (one deleted, one without a network), every kind
    # of volume, an SSH key, labels.
    main = make.instance(session, host, image, ssh_key_pair_id=ssh.id,
                                display_name="main", runtime_config={"vnc": 5901},
                                request_params={"a": [1, 2]}, encrypted_password=None,
                                password_will_be_deleted_at=FIXED, quota_weight=1.5,
                                hostname="main")
    nat_vif = make.vif(session, main, inside, ipv4="10.40.0.10",
                              security_groups=[groups[0], groups[1]], device_index=0,
                              nat_network_id=outside.id)
    make.lease_ip(session, nat_vif, outside, "172.16.8.20")
    released = make.vif(session, main, inside, ipv4="10.40.0.11",
                               security_groups=[groups[2]], device_index=1)
    teardown.release_ip_lease(session, released.ip_leases[0], FIXED)
    make.lease_ip(session, released, inside, "10.40.0.12")
    gone = make.vif(session, main, inside, ipv4="10.40.0.13", device_index=2)
    teardown.destroy_vif(session, gone)
    gone.deleted_at = FIXED
    make.vif(session, main, None, device_index=3)
    make.vif(session, main, plain, ipv4="10.41.0.5", device_index=4)
    session.add_all([
        NetworkVifMonitor(network_vif_id=nat_vif.id, title="http", params={"port": 80}),
        NetworkVifMonitor(network_vif_id=nat_vif.id, title="old", deleted_at=FIXED),
        NetworkVifMonitor(network_vif_id=released.id, enabled=False, title=None),
    ])
    boot = make.volume(session, main, LOCAL, boot=True, display_name="boot",
                              attached_at=FIXED_WHOLE)
    make.volume(session, main, ISCSI, node=iscsi, guest_device_name="vdb",
                       backup_object_id=source_bo.canonical_uuid)
    make.volume(session, main, NFS, node=nfs, guest_device_name="vdc",
                       request_params={"size": "10G"})
    make.volume(session, main, None, state="scheduling")
    dropped = make.volume(session, main, NFS, node=nfs, guest_device_name="vdd")
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
    neighbour = make.instance(session, host, image, state="halting", status="offline",
                                     hostname="neighbour")
    dns_vif = make.vif(session, neighbour, inside, ipv4="10.40.0.30",
                              security_groups=[groups[0]], nat_network_id=outside.id)
    make.lease_ip(session, dns_vif, outside, "172.16.8.30")
    loose = make.vif(session, None, inside, ipv4="10.40.0.31")
    session.add_all([
        NetworkService(network_vif_id=dns_vif.id, name="dns", incoming_port=53),
        NetworkService(network_vif_id=loose.id, name="gateway", outgoing_port=8080),
        NetworkService(network_vif_id=nat_vif.id, name="metadata", incoming_port=80,
                       outgoing_port=9000),
    ])

    # Terminated (through the real cascade), never placed, on an offline host, starting.
    doomed = make.running_instance(session, host, storage=iscsi, net=inside,
                                          ipv4="10.40.0.40")
    doomed.hostname = "doomed"
    teardown.destroy_instance(session, doomed, FIXED)
    unplaced = make.instance(session, None, bare_image, state="scheduling",
                                    status="init", hostname="unplaced")
    away = make.instance(session, offline, image, hostname="away")
    make.vif(session, away, inside, ipv4="10.40.0.50")
    starting = make.instance(session, host, image, state="starting", hostname="starting")
    make.vif(session, starting, plain, ipv4="10.41.0.6", security_groups=[groups[2]])

    loose_volume = make.volume(session, None, ISCSI, node=iscsi, state="available")
    snapshot = VolumeSnapshot(account_id="a-shpoolxx", storage_node_id=iscsi.id,
                              origin_volume_id=loose_volume.canonical_uuid, size=5,
                              destination_key=None)
    session.add(snapshot)
    alarms = [
        make.alarm(session, main),
        make.alarm(session, main, "cpu.usage", description="hot"),
        make.alarm(session, main, "memory.usage", deleted_at=FIXED),
        make.alarm(session, neighbour, "disk.usage", enabled=False),
        make.alarm(session, away, "log"),
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
