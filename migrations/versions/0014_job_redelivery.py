"""job redelivery

A pushed job no agent took in time is sent again under its id: when that is due, and how
many times it was.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-16 06:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from collector.models.base import UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('queued_jobs') as batch:
        batch.add_column(sa.Column('redeliver_at', UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('redeliveries', sa.Integer(), nullable=False,
                                   server_default='0'))
    op.create_index('ix_queued_jobs_state_redeliver', 'queued_jobs', ['state', 'redeliver_at'])


def downgrade() -> None:
    op.drop_index('ix_queued_jobs_state_redeliver', table_name='queued_jobs')
    with op.batch_alter_table('queued_jobs') as batch:
        batch.drop_column('redeliveries')
        batch.drop_column('redeliver_at')
