"""placement

Used-capacity counters on hosts and storage nodes, the allocation rows they sum, the
explicit IP cursor per network, and the placement error of instances and volumes.
Existing placements are backfilled: every alive instance on a host holds its cpu, memory
and local disk there, and every alive volume on a storage node holds its size.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column('created_at', collector.models.base.UTCDateTime(), nullable=False),
            sa.Column('updated_at', collector.models.base.UTCDateTime(), nullable=False)]


def upgrade() -> None:
    op.add_column('host_nodes', sa.Column('used_cpu_cores', sa.Integer(), nullable=False,
                                          server_default='0'))
    op.add_column('host_nodes', sa.Column('used_memory_size', sa.Integer(), nullable=False,
                                          server_default='0'))
    op.add_column('host_nodes', sa.Column('used_disk_bytes', sa.BigInteger(), nullable=False,
                                          server_default='0'))
    op.create_index('ix_host_nodes_hypervisor_arch', 'host_nodes', ['hypervisor', 'arch'])
    op.add_column('storage_nodes', sa.Column('used_disk_bytes', sa.BigInteger(),
                                             nullable=False, server_default='0'))
    op.add_column('networks', sa.Column('ip_cursor', sa.BigInteger(), nullable=True))
    op.add_column('instances', sa.Column('placement_error', sa.Text(), nullable=True))
    op.add_column('volumes', sa.Column('placement_error', sa.Text(), nullable=True))
    op.create_table(
        'host_allocations',
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('host_node_id', sa.Integer(), nullable=False),
        sa.Column('cpu_cores', sa.Integer(), nullable=False),
        sa.Column('memory_size', sa.Integer(), nullable=False),
        sa.Column('disk_bytes', sa.BigInteger(), nullable=False),
        *_timestamps(),
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(['host_node_id'], ['host_nodes.id']),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('instance_id'),
    )
    op.create_index('ix_host_allocations_host_node_id', 'host_allocations', ['host_node_id'])
    op.create_table(
        'storage_allocations',
        sa.Column('volume_id', sa.Integer(), nullable=False),
        sa.Column('storage_node_id', sa.Integer(), nullable=False),
        sa.Column('disk_bytes', sa.BigInteger(), nullable=False),
        *_timestamps(),
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(['storage_node_id'], ['storage_nodes.id']),
        sa.ForeignKeyConstraint(['volume_id'], ['volumes.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('volume_id'),
    )
    op.create_index('ix_storage_allocations_storage_node_id', 'storage_allocations',
                    ['storage_node_id'])
    _backfill()


def _backfill() -> None:
    now = "CURRENT_TIMESTAMP"
    op.execute(f"""
        INSERT INTO host_allocations (instance_id, host_node_id, cpu_cores, memory_size,
                                      disk_bytes, created_at, updated_at)
        SELECT i.id, i.host_node_id, i.cpu_cores, i.memory_size,
               COALESCE((SELECT SUM(v.size) FROM volumes v
                         JOIN local_volumes lv ON lv.id = v.id
                         WHERE lv.instance_id = i.id AND v.deleted_at IS NULL), 0),
               {now}, {now}
        FROM instances i
        WHERE i.terminated_at IS NULL AND i.host_node_id IS NOT NULL
    """)
    op.execute(f"""
        INSERT INTO storage_allocations (volume_id, storage_node_id, disk_bytes,
                                         created_at, updated_at)
        SELECT v.id, COALESCE(iv.iscsi_storage_node_id, nv.nfs_storage_node_id), v.size,
               {now}, {now}
        FROM volumes v
        LEFT JOIN iscsi_volumes iv ON iv.id = v.id
        LEFT JOIN nfs_volumes nv ON nv.id = v.id
        WHERE v.deleted_at IS NULL
          AND COALESCE(iv.iscsi_storage_node_id, nv.nfs_storage_node_id) IS NOT NULL
    """)
    op.execute("""
        UPDATE host_nodes SET
          used_cpu_cores = COALESCE((SELECT SUM(a.cpu_cores) FROM host_allocations a
                                     WHERE a.host_node_id = host_nodes.id), 0),
          used_memory_size = COALESCE((SELECT SUM(a.memory_size) FROM host_allocations a
                                       WHERE a.host_node_id = host_nodes.id), 0),
          used_disk_bytes = COALESCE((SELECT SUM(a.disk_bytes) FROM host_allocations a
                                      WHERE a.host_node_id = host_nodes.id), 0)
    """)
    op.execute("""
        UPDATE storage_nodes SET
          used_disk_bytes = COALESCE((SELECT SUM(a.disk_bytes) FROM storage_allocations a
                                      WHERE a.storage_node_id = storage_nodes.id), 0)
    """)


def downgrade() -> None:
    op.drop_index('ix_storage_allocations_storage_node_id', table_name='storage_allocations')
    op.drop_table('storage_allocations')
    op.drop_index('ix_host_allocations_host_node_id', table_name='host_allocations')
    op.drop_table('host_allocations')
    with op.batch_alter_table('volumes') as batch_op:
        batch_op.drop_column('placement_error')
    with op.batch_alter_table('instances') as batch_op:
        batch_op.drop_column('placement_error')
    with op.batch_alter_table('networks') as batch_op:
        batch_op.drop_column('ip_cursor')
    with op.batch_alter_table('storage_nodes') as batch_op:
        batch_op.drop_column('used_disk_bytes')
    op.drop_index('ix_host_nodes_hypervisor_arch', table_name='host_nodes')
    with op.batch_alter_table('host_nodes') as batch_op:
        batch_op.drop_column('used_disk_bytes')
        batch_op.drop_column('used_memory_size')
        batch_op.drop_column('used_cpu_cores')
