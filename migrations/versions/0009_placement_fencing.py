"""placement fencing

Every placement of an instance has a generation (``instances.placement_generation``); the
jobs written for it carry it (``queued_jobs.generation``). A job may be held in the ledger
(state ``held``) until another job finishes (``after_job_id``), until a time
(``held_until``), or, with neither, until its node comes back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('placement_generation', sa.Integer(), nullable=False,
                                   server_default='1'))
    with op.batch_alter_table('queued_jobs') as batch:
        batch.add_column(sa.Column('generation', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('held_until', collector.models.base.UTCDateTime(),
                                   nullable=True))
        batch.add_column(sa.Column('after_job_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_queued_jobs_after_job_id', 'queued_jobs',
                                 ['after_job_id'], ['id'])
        batch.create_index('ix_queued_jobs_after_job_id', ['after_job_id'])


def downgrade() -> None:
    with op.batch_alter_table('queued_jobs') as batch:
        batch.drop_index('ix_queued_jobs_after_job_id')
        batch.drop_constraint('fk_queued_jobs_after_job_id', type_='foreignkey')
        batch.drop_column('after_job_id')
        batch.drop_column('held_until')
        batch.drop_column('generation')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('placement_generation')
