"""input rules

No two volumes attached to one instance share a guest device name: a partial unique index
(both PostgreSQL and SQLite have them) holds the rule the service checks, also when two
updates race. An installation that already broke the rule is told which volumes clash
rather than changed behind its back.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

WHERE = "state = 'attached' AND deleted_at IS NULL AND guest_device_name <> ''"


def upgrade() -> None:
    clashes = op.get_bind().execute(sa.text(
        "SELECT instance_id, guest_device_name, COUNT(*) FROM volumes "
        f"WHERE {WHERE} AND instance_id IS NOT NULL "
        "GROUP BY instance_id, guest_device_name HAVING COUNT(*) > 1")).all()
    if clashes:
        listed = ", ".join(f"instance row {i} device {d!r} ({n} volumes)" for i, d, n in clashes)
        raise RuntimeError("attached volumes share a guest device name; detach all but one "
                           f"of each before upgrading: {listed}")
    op.create_index('ux_volumes_attached_guest_device', 'volumes',
                    ['instance_id', 'guest_device_name'], unique=True,
                    postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index('ux_volumes_attached_guest_device', table_name='volumes')
