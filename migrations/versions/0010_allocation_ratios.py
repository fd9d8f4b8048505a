"""allocation ratios

A host's cpu and memory allocation ratios, in thousandths (``2000`` = 2.0): placement offers
physical x ratio. NULL (every existing host) takes the scheduler configuration's default.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 04:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('host_nodes', sa.Column('cpu_allocation_ratio_milli', sa.Integer(),
                                          nullable=True))
    op.add_column('host_nodes', sa.Column('ram_allocation_ratio_milli', sa.Integer(),
                                          nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('host_nodes') as batch:
        batch.drop_column('ram_allocation_ratio_milli')
        batch.drop_column('cpu_allocation_ratio_milli')
