"""outbox claims and failures

``claimed_until``: the relay claims rows in a short transaction and publishes them outside
it; ``failed_at``: a row that failed on its own too many times (dead-lettered).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_until', collector.models.base.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('failed_at', collector.models.base.UTCDateTime(),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('failed_at')
        batch_op.drop_column('claimed_until')
