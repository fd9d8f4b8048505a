"""outbox awaiting receipt

An event's or an event handler's outbox row stays flagged until its receiver writes its
receipt: the re-send pass reads the flagged rows only (a partial index), not a day of events.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:35:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('awaiting_receipt', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_index('ix_outbox_awaiting_receipt', 'outbox', ['sent_at'],
                    postgresql_where=sa.text('awaiting_receipt'),
                    sqlite_where=sa.text('awaiting_receipt'))


def downgrade() -> None:
    op.drop_index('ix_outbox_awaiting_receipt', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('awaiting_receipt')
