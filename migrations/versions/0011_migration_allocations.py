"""migration allocations

A live migration's claim on its destination host (one row per migrating instance), held
beside the instance's host allocation on the source until the switch is reported.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-15 04:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from collector.models.base import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'migration_allocations',
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('host_node_id', sa.Integer(), nullable=False),
        sa.Column('cpu_cores', sa.Integer(), nullable=False),
        sa.Column('memory_size', sa.Integer(), nullable=False),
        sa.Column('disk_bytes', sa.BigInteger(), nullable=False),
        sa.Column('job_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(['host_node_id'], ['host_nodes.id']),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('instance_id'),
        sa.UniqueConstraint('job_id'),
    )
    op.create_index('ix_migration_allocations_host_node_id', 'migration_allocations',
                    ['host_node_id'])


def downgrade() -> None:
    op.drop_index('ix_migration_allocations_host_node_id', 'migration_allocations')
    op.drop_table('migration_allocations')
