"""index for the finished jobs' retention

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 13:00:00.000000
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_queued_jobs_state_finished', 'queued_jobs', ['state', 'finished_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_queued_jobs_state_finished', table_name='queued_jobs')
