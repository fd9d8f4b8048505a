"""node credentials

Which signing key of each node is the valid one (its generation) and its broker user;
``revoked_at`` ends it (``collector credentials issue / revoke``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 13:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

import collector.models.base

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'node_credentials',
        sa.Column('node_id', sa.String(length=80), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('broker_user', sa.String(length=120), nullable=False),
        sa.Column('issued_at', collector.models.base.UTCDateTime(), nullable=False),
        sa.Column('revoked_at', collector.models.base.UTCDateTime(), nullable=True),
        sa.Column('created_at', collector.models.base.UTCDateTime(), nullable=False),
        sa.Column('updated_at', collector.models.base.UTCDateTime(), nullable=False),
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('node_id'),
    )


def downgrade() -> None:
    op.drop_table('node_credentials')
