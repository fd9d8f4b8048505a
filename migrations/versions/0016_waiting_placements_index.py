"""waiting placements index

A ``schedule_instance`` job takes the placements waiting with it (``own_jobs``): it reads the
scheduler's pending jobs in id order through a partial index that holds only those, not
the whole ledger in id order.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 11:05:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

WAITING = "queue_name = 'scheduler' AND state = 'pending'"


def upgrade() -> None:
    op.create_index('ix_queued_jobs_waiting_placements', 'queued_jobs', ['id'],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index('ix_queued_jobs_waiting_placements', table_name='queued_jobs')
