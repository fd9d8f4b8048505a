"""dead letters

Messages the Collector gave up on (a handler that kept failing, an outbox row the relay
could not publish), kept for ``collector dead-letters list|replay``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('task_name', sa.String(length=255), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=True),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('kwargs', sa.JSON(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('error_type', sa.String(length=255), nullable=False),
    sa.Column('error', sa.String(length=2000), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', collector.models.base.UTCDateTime(), nullable=False),
    sa.Column('replayed_at', collector.models.base.UTCDateTime(), nullable=True),
    sa.Column('replay_count', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_replayed_created', ['replayed_at', 'created_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_task_id'), ['task_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_task_id'))
        batch_op.drop_index('ix_dead_letters_replayed_created')
    op.drop_table('dead_letters')
