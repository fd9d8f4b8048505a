"""foreign key indexes

Indexes on the integer foreign keys that 0001 left unindexed (PostgreSQL does not index
a referencing column by itself): lookups such as "the lease of this IP handle" or "routes
using this outer lease" stay index scans.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 05:59:04.603954
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

INDEXES = [
    ('instances', 'ssh_key_pair_id'),
    ('ip_handles', 'ip_pool_id'),
    ('ip_pool_dc_networks', 'dc_network_id'),
    ('network_routes', 'outer_lease_id'),
    ('network_vif_ip_leases', 'ip_handle_id'),
    ('network_vifs', 'nat_network_id'),
    ('networks', 'nat_network_id'),
    ('queued_jobs', 'parent_id'),
    ('volume_snapshots', 'storage_node_id'),
]


def upgrade() -> None:
    for table, column in INDEXES:
        op.create_index(op.f(f'ix_{table}_{column}'), table, [column], unique=False)


def downgrade() -> None:
    for table, column in reversed(INDEXES):
        op.drop_index(op.f(f'ix_{table}_{column}'), table_name=table)
