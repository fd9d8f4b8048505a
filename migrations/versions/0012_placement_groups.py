"""placement groups

Instances placed together (affinity) or apart (anti-affinity), hard or soft; a member
carries ``instances.placement_group_id``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 05:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'placement_groups',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('uuid', sa.String(64), nullable=False, unique=True),
        sa.Column('account_id', sa.String(255), nullable=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('policy', sa.String(32), nullable=False),
        sa.Column('max_per_host', sa.Integer(), nullable=False),
        sa.Column('deleted_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_placement_groups_account_id', 'placement_groups', ['account_id'])
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite accepts REFERENCES on an added NULL column (no table copy needed)
        op.execute('ALTER TABLE instances ADD COLUMN placement_group_id INTEGER '
                   'REFERENCES placement_groups (id)')
    else:
        op.add_column('instances', sa.Column('placement_group_id', sa.Integer(),
                                             nullable=True))
        op.create_foreign_key('fk_instances_placement_group_id', 'instances',
                              'placement_groups', ['placement_group_id'], ['id'])
    op.create_index('ix_instances_placement_group_id', 'instances', ['placement_group_id'])


def downgrade() -> None:
    op.drop_index('ix_instances_placement_group_id', 'instances')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('placement_group_id')
    op.drop_index('ix_placement_groups_account_id', 'placement_groups')
    op.drop_table('placement_groups')
