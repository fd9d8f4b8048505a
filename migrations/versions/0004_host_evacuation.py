"""host evacuation

When a host was last evacuated: the marker that makes an evacuation triggered by the
node-offline event happen once per outage.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('host_nodes', sa.Column('evacuated_at', collector.models.base.UTCDateTime(),
                                          nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('host_nodes') as batch_op:
        batch_op.drop_column('evacuated_at')
