"""The models on a freshly migrated SQLite file: canonical ids, lookups, constraints.

No server fixtures: each test has its own temporary database, a copy of the session's one
migrated by ``collector.db.migrate.upgrade`` exactly as ``collector db upgrade`` does
(conftest's ``migrated_sqlite``).
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector import ids
from collector.db.migrate import current
from collector.errors import (
    InvalidArgument,
    UnknownHostNodeID,
    UnknownInstanceID,
    UnknownVnicID,
    UnknownVolumeID,
)
from collector.models import (
    TAGGABLE_CLASSES,
    Base,
    HostNode,
    HostNodeVnet,
    Image,
    Instance,
    Network,
    NetworkGroup,
    NetworkVif,
    NetworkVifIpLease,
    NodeState,
    Tag,
    Volume,
    find_taggable,
)
from collector.models.networks import ipv4_to_i


@pytest.fixture()
def url(migrated_sqlite) -> str:
    return migrated_sqlite("models.sqlite3")


@pytest.fixture()
def session(url):
    engine = create_engine(url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_upgrade_reaches_head_and_matches_the_models(url):
    assert current(url) is not None
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_taggable_prefix_is_a_known_canonical_prefix():
    assert set(TAGGABLE_CLASSES) <= set(ids.PREFIXES)
    for prefix, cls in TAGGABLE_CLASSES.items():
        assert cls.prefix == prefix


def _instance_with_volume_and_vif(session: Session):
    host = HostNode(node_id="hva.models1", offering_cpu_cores=8, offering_memory_size=8192)
    image = Image()
    network = Network(ipv4_network="10.0.0.0", prefix_len=24)
    session.add_all([host, image, network])
    session.flush()
    inst = Instance(image_id=image.id, host_node_id=host.id)
    session.add(inst)
    session.flush()
    volume = Volume(instance_id=inst.id, size=10 * 2**30, volume_type="local")
    vif = NetworkVif(instance_id=inst.id, network_id=network.id, mac_addr="525400abcdef")
    session.add_all([volume, vif])
    session.flush()
    lease = NetworkVifIpLease(network_id=network.id, network_vif_id=vif.id,
                              ipv4=ipv4_to_i("10.0.0.10"))
    session.add(lease)
    session.flush()
    return host, image, inst, volume, vif, lease


def test_new_rows_get_canonical_ids_and_defaults(session):
    host, image, inst, volume, vif, lease = _instance_with_volume_and_vif(session)
    for row, prefix in [(host, "hn"), (image, "wmi"), (inst, "i"), (volume, "vol"),
                        (vif, "vif")]:
        assert row.canonical_uuid == f"{prefix}-{row.uuid}" and len(row.uuid) == 8
    assert (inst.state, inst.status) == ("init", "init")
    assert volume.state == "initialized" and volume.is_local_volume
    assert image.os_type == "linux"
    assert vif.pretty_mac_addr() == "52:54:00:ab:cd:ef"
    assert lease.ipv4_s == "10.0.0.10" and lease.is_deleted == 0
    assert host.status == "offline"  # no heartbeat row yet
    session.add(NodeState(node_id="hva.models1", boot_token="t", state="online"))
    session.flush()
    session.expire(host, ["node"])
    assert host.status == "online"


def test_relationships_link_the_aggregate(session):
    host, image, inst, volume, vif, lease = _instance_with_volume_and_vif(session)
    session.expire_all()
    inst = Instance.by_cuuid(session, inst.canonical_uuid)
    assert inst.host_node is host and inst.image is image
    assert inst.volumes == [volume] and inst.network_vifs == [vif]
    assert vif.ip_leases == [lease] and lease.network_vif is vif


def test_lookup_by_canonical_id_enforces_the_prefix(session):
    host, image, inst, volume, vif, _ = _instance_with_volume_and_vif(session)
    assert Instance.by_cuuid(session, inst.canonical_uuid) is inst
    assert Volume.by_cuuid(session, volume.canonical_uuid) is volume
    assert NetworkVif.find_cuuid(session, "vif-zzzzzzzz") is None
    for cls, wrong in [(Instance, volume.canonical_uuid), (Volume, inst.canonical_uuid),
                       (HostNode, "garbage"), (Instance, 42)]:
        with pytest.raises(InvalidArgument):
            cls.by_cuuid(session, wrong)
    for cls, error in [(Instance, UnknownInstanceID), (Volume, UnknownVolumeID),
                       (HostNode, UnknownHostNodeID), (NetworkVif, UnknownVnicID)]:
        with pytest.raises(error):
            cls.by_cuuid(session, f"{cls.prefix}-zzzzzzzz")


def test_soft_delete_keeps_rows_findable_by_id(session):
    _, _, inst, volume, _, _ = _instance_with_volume_and_vif(session)
    volume.destroy()
    session.flush()
    assert (volume.state, volume.status) == ("deleted", "offline")
    assert Volume.by_cuuid(session, volume.canonical_uuid) is volume
    assert session.scalars(select(Volume).where(Volume.alive())).all() == []
    assert session.scalars(select(Instance).where(Instance.alive())).all() == [inst]


def test_tag_groups_share_one_table_and_resolve_by_their_own_prefix(session):
    group = NetworkGroup(name="default")
    session.add(group)
    session.flush()
    assert group.type_id == 10 and group.canonical_uuid.startswith("nwg-")
    assert find_taggable(session, group.canonical_uuid) is group
    assert session.scalars(select(Tag)).one() is group
    with pytest.raises(InvalidArgument):
        find_taggable(session, "nope-abc")


def test_host_node_vnet_is_unique_per_host_and_network(session):
    host, _, _, _, vif, _ = _instance_with_volume_and_vif(session)
    session.add(HostNodeVnet(host_node_id=host.id, network_id=vif.network_id,
                             broadcast_addr="ffffffffffff"))
    session.flush()
    session.add(HostNodeVnet(host_node_id=host.id, network_id=vif.network_id,
                             broadcast_addr="ffffffffffff"))
    with pytest.raises(IntegrityError):
        session.flush()
