"""event receipts

One row per (event id, handler) processed: the dispatcher's (``dispatch``) and every
handler's, so a repeated event or handler message is a no-op and a lost one is re-sent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'event_receipts',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('event_id', sa.String(255), nullable=False),
        sa.Column('handler', sa.String(255), nullable=False),
        sa.Column('processed_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_event_receipts_event_handler', 'event_receipts',
                    ['event_id', 'handler'], unique=True)
    op.create_index('ix_event_receipts_processed_at', 'event_receipts', ['processed_at'])


def downgrade() -> None:
    op.drop_index('ix_event_receipts_processed_at', 'event_receipts')
    op.drop_index('ix_event_receipts_event_handler', 'event_receipts')
    op.drop_table('event_receipts')
