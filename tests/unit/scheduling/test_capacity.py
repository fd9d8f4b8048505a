"""Capacity counters and allocations: atomic claims, releases that follow the instance,
reconcile, candidate queries, and the migration's backfill."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine, select, text, update

from collector.models import HostAllocation, HostNode, Instance, StorageAllocation, StorageNode
from collector.scheduling import capacity, teardown
from collector.scheduling.candidates import MB, HostRequest
from collector.services import host_nodes, hva, sta
from workers.demo.world import make

GB = 1024 * MB


def hyper():
    """A hypervisor name of this test only: committed hosts of other tests never match."""
    return f"kvm-{secrets.token_hex(3)}"


def make_host(session, hypervisor, cpu=4, mem=4096, disk_mb=100 * 1024, **kw):
    return make.host_node(session, hypervisor=hypervisor, offering_cpu_cores=cpu,
                                 offering_memory_size=mem, offering_disk_space_mb=disk_mb, **kw)


def new_instance(session, hypervisor, cpu=1, mem=1024):
    return make.instance(session, state="scheduling", hypervisor=hypervisor,
                                cpu_cores=cpu, memory_size=mem)


def used(session, host):
    session.refresh(host)
    return host.used_cpu_cores, host.used_memory_size, host.used_disk_bytes


def test_claim_records_the_allocation_and_the_counters(session):
    hv = hyper()
    host = make_host(session, hv)
    inst = new_instance(session, hv, cpu=2, mem=1024)
    assert capacity.claim_host(session, host.id, inst, 10 * GB)
    assert inst.host_node_id == host.id
    alloc = session.scalars(select(HostAllocation).where(
        HostAllocation.instance_id == inst.id)).one()
    assert (alloc.host_node_id, alloc.cpu_cores, alloc.memory_size, alloc.disk_bytes) == \
        (host.id, 2, 1024, 10 * GB)
    assert used(session, host) == (2, 1024, 10 * GB)
    assert capacity.reconcile(session) == []


@pytest.mark.parametrize(("cpu", "mem", "disk"), [(5, 1, 0), (1, 5000, 0), (1, 1, 101 * GB)],
                         ids=["cpu", "memory", "disk"])
def test_a_claim_that_does_not_fit_changes_nothing(session, cpu, mem, disk):
    hv = hyper()
    host = make_host(session, hv)
    inst = new_instance(session, hv, cpu=cpu, mem=mem)
    assert not capacity.claim_host(session, host.id, inst, disk)
    assert inst.host_node_id is None and used(session, host) == (0, 0, 0)
    assert session.scalars(select(HostAllocation).where(
        HostAllocation.instance_id == inst.id)).first() is None


def test_exactly_full_fits_and_one_more_does_not(session):
    hv = hyper()
    host = make_host(session, hv, cpu=2, mem=2048, disk_mb=2048)
    a, b, c = (new_instance(session, hv) for _ in range(3))
    assert capacity.claim_host(session, host.id, a, GB)
    assert capacity.claim_host(session, host.id, b, GB)
    assert not capacity.claim_host(session, host.id, c, 0)
    assert capacity.claim_host(session, host.id, c, 0, force=True)  # a fact, recorded
    assert used(session, host) == (3, 3072, 2 * GB)


def test_disk_offerings_beyond_two_gigabytes_do_not_overflow(session):
    hv = hyper()
    host = make_host(session, hv, disk_mb=10 * 1024 * 1024)  # 10 TB
    inst = new_instance(session, hv)
    assert capacity.claim_host(session, host.id, inst, 5 * 1024 * GB)


def test_release_gives_back_exactly_what_was_claimed_once(session):
    hv = hyper()
    host = make_host(session, hv)
    inst = new_instance(session, hv, cpu=2, mem=2048)
    capacity.claim_host(session, host.id, inst, GB)
    inst.cpu_cores, inst.memory_size = 3, 3000  # a resize later does not skew the release
    session.flush()
    capacity.release_host(session, inst)
    capacity.release_host(session, inst)
    assert used(session, host) == (0, 0, 0)


def test_terminating_releases_the_host(session):
    hv = hyper()
    host = make_host(session, hv)
    inst = make.instance(session, host, hypervisor=hv)
    assert used(session, host)[0] == 1
    teardown.destroy_instance(session, inst)
    assert used(session, host) == (0, 0, 0)


def test_hva_stop_releases_and_a_host_change_moves_the_claim(session):
    hv = hyper()
    a, b = make_host(session, hv), make_host(session, hv)
    inst = make.instance(session, a, hypervisor=hv, cpu_cores=2)
    make.volume(session, inst, "local", size=GB)
    assert used(session, a) == (2, 1024, GB)
    hva.update_instance(session, inst.canonical_uuid, {"host_node_id": b.canonical_uuid})
    assert used(session, a) == (0, 0, 0) and used(session, b) == (2, 1024, GB)
    hva.update_instance(session, inst.canonical_uuid, {"host_node_id": b.canonical_uuid})
    assert used(session, b) == (2, 1024, GB)
    hva.update_instance(session, inst.canonical_uuid, {"state": "stopping"})
    hva.update_instance(session, inst.canonical_uuid, {"state": "stopped",
                                                       "host_node_id": None})
    assert used(session, b) == (0, 0, 0)
    assert capacity.reconcile(session) == []


def test_switch_instance_host_node_moves_the_claim(session):
    hv = hyper()
    a, b = make_host(session, hv), make_host(session, hv)
    inst = make.instance(session, a, hypervisor=hv)
    host_nodes.switch_instance_host_node(session, inst.canonical_uuid, b.node_id)
    assert used(session, a) == (0, 0, 0) and used(session, b) == (1, 1024, 0)


def test_storage_claims_and_volume_deletion_releases(session):
    node = make.storage_node(session, offering_disk_space_mb=10 * 1024)
    vol = make.volume(session, None, kind=None, size=4 * GB, state="scheduling")
    assert capacity.claim_storage(session, node.id, vol)
    other = make.volume(session, None, kind=None, size=7 * GB, state="scheduling")
    assert not capacity.claim_storage(session, node.id, other)
    session.refresh(node)
    assert node.used_disk_bytes == 4 * GB
    sta.update_volume(session, vol.canonical_uuid, {"state": "deleted"})
    session.refresh(node)
    assert node.used_disk_bytes == 0
    assert session.scalars(select(StorageAllocation).where(
        StorageAllocation.volume_id == vol.id)).first() is None


def test_sample_data_builders_keep_counters_true(session):
    host = make.host_node(session)
    make.running_instance(session, host)
    make.load_balanced_pair(session, host)
    assert capacity.reconcile(session) == []
    session.refresh(host)
    assert host.used_cpu_cores == 4 and host.used_disk_bytes == 10 * GB


def test_reconcile_repairs_drifted_counters(session):
    hv = hyper()
    host = make_host(session, hv)
    node = make.storage_node(session)
    inst = make.instance(session, host, hypervisor=hv)
    session.execute(update(HostNode).where(HostNode.id == host.id).values(used_cpu_cores=9))
    session.execute(update(StorageNode).where(StorageNode.id == node.id)
                    .values(used_disk_bytes=5))
    fixes = capacity.reconcile(session)
    assert {"host_node_id": host.canonical_uuid, "was": (9, 1024, 0),
            "now": (1, 1024, 0)} in fixes
    assert {"storage_node_id": node.canonical_uuid, "was": 5, "now": 0} in fixes
    assert capacity.reconcile(session) == [] and inst.host_node_id == host.id


def test_host_candidates_filter_in_sql_and_order_best_first(session):
    hv = hyper()
    offline = make_host(session, hv, mem=64000, online=False)
    disabled = make_host(session, hv, mem=64000, scheduling_enabled=False)
    other_arch = make_host(session, hv, mem=64000, arch="x86")
    small = make_host(session, hv, cpu=1)
    b = make_host(session, hv, mem=8192)
    a = make_host(session, hv, mem=8192)
    c = make_host(session, hv, mem=6000, cpu=16)
    request = HostRequest("i-x", hv, "x86_64", cpu_cores=2, memory_size=1024)
    by_memory = capacity.host_candidates(session, request)
    assert [h.id for h in by_memory] == [b.id, a.id, c.id]
    assert [h.id for h in capacity.host_candidates(session, request, order="cpu")][0] == c.id
    assert len(capacity.host_candidates(session, request, limit=2)) == 2
    assert {offline.id, disabled.id, other_arch.id, small.id}.isdisjoint(h.id for h in by_memory)
    assert capacity.matching_host_exists(session, hv, "x86")
    assert not capacity.matching_host_exists(session, hv, "arm64")


def test_domain_checks_and_hypervisor_availability(session):
    hv = hyper()
    assert not capacity.hypervisor_available(session, hv)
    make_host(session, hv, online=False)
    assert not capacity.hypervisor_available(session, hv)
    make_host(session, hv)
    assert capacity.hypervisor_available(session, hv)
    assert capacity.domain_host_capacity(session, 1, 128)
    assert not capacity.domain_host_capacity(session, 10**6, 128)
    assert not capacity.domain_storage_capacity(session, 10**18)


def _migrated_to(url, revision):
    from collector.db.migrate import upgrade

    upgrade(url, revision)


def test_migration_backfills_existing_placements(request, tmp_path, db_url):
    """0003 on a database that already has placed instances and volumes."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'backfill.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"backfill_{secrets.token_hex(4)}")
    _migrated_to(url, "0002")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    now = "CURRENT_TIMESTAMP"
    with engine.begin() as conn:
        def insert(sql):
            return conn.execute(text(sql)).scalar()

        host = insert(f"INSERT INTO host_nodes (created_at, updated_at, uuid, node_id, arch, "
                      f"hypervisor, offering_cpu_cores, offering_memory_size, "
                      f"offering_disk_space_mb, scheduling_enabled) VALUES ({now}, {now}, "
                      f"'h1', 'hva.h1', 'x86_64', 'kvm', 8, 8192, 1000, true) RETURNING id")
        sn = insert(f"INSERT INTO storage_nodes (created_at, updated_at, uuid, node_id, "
                    f"offering_disk_space_mb, storage_type) VALUES ({now}, {now}, 's1', "
                    f"'sta.s1', 1000, 'iscsi') RETURNING id")
        image = insert(f"INSERT INTO images (boot_dev_type, arch, is_public, state, "
                       f"is_cacheable, os_type, uuid, created_at, updated_at) VALUES (2, "
                       f"'x86_64', false, 'available', false, 'linux', 'img1', {now}, {now}) "
                       f"RETURNING id")

        def instance(uuid, cpu, terminated):
            return insert(
                f"INSERT INTO instances (uuid, image_id, host_node_id, state, status, "
                f"ha_enabled, quota_weight, cpu_cores, memory_size, user_data, terminated_at, "
                f"created_at, updated_at) VALUES ('{uuid}', {image}, {host}, 'running', "
                f"'online', 0, 1.0, {cpu}, 1024, '', {now if terminated else 'NULL'}, {now}, "
                f"{now}) RETURNING id")

        alive, gone = instance("i1", 2, False), instance("i2", 4, True)

        def volume(uuid, size, inst, deleted=False):
            return insert(
                f"INSERT INTO volumes (uuid, status, state, size, instance_id, deleted_at, "
                f"created_at, updated_at) VALUES ('{uuid}', 'online', 'attached', {size}, "
                f"{inst or 'NULL'}, {now if deleted else 'NULL'}, {now}, {now}) RETURNING id")

        for vol in (volume("v1", 3 * GB, alive), volume("v2", 5 * GB, alive, deleted=True)):
            conn.execute(text(f"INSERT INTO local_volumes (id, instance_id) VALUES ({vol}, "
                              f"{alive})"))
        shared = volume("v3", 7 * GB, None)
        conn.execute(text(f"INSERT INTO iscsi_volumes (id, iscsi_storage_node_id) VALUES "
                          f"({shared}, {sn})"))
        volume("v4", GB, gone)
    _migrated_to(url, "head")
    with engine.connect() as conn:
        allocations = conn.execute(text("SELECT instance_id, host_node_id, cpu_cores, "
                                        "memory_size, disk_bytes FROM host_allocations")).all()
        assert [tuple(r) for r in allocations] == [(alive, host, 2, 1024, 3 * GB)]
        assert tuple(conn.execute(text(
            "SELECT used_cpu_cores, used_memory_size, used_disk_bytes FROM host_nodes"))
            .one()) == (2, 1024, 3 * GB)
        assert [tuple(r) for r in conn.execute(text(
            "SELECT volume_id, storage_node_id, disk_bytes FROM storage_allocations"))] == \
            [(shared, sn, 7 * GB)]
        assert conn.execute(text("SELECT used_disk_bytes FROM storage_nodes")).scalar() == 7 * GB
    engine.dispose()


def test_an_instance_counts_once_whatever_its_state(session):
    """Counters come from allocations, not from summing instances (no double count)."""
    hv = hyper()
    host = make_host(session, hv)
    for state in ("pending", "running", "halted"):
        make.instance(session, host, hypervisor=hv, state=state)
    assert used(session, host)[0] == 3
    assert session.scalar(select(Instance.id).where(Instance.host_node_id == host.id)
                          .limit(1)) is not None
