"""host free capacity indexes

A claim ranks the hosts that fit by free memory (or cores) at the default allocation ratio
and takes the first (``collector.scheduling.capacity.claim_best``). These indexes hold the
hosts in that order, so PostgreSQL reads the first hosts of the index until one fits
instead of ranking the whole fleet at every claim. PostgreSQL only.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 16:50:00.000000
"""
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

FREE = {
    "ix_host_nodes_free_memory": "(CAST(offering_memory_size AS BIGINT) * "
                                 "coalesce(ram_allocation_ratio_milli, 1000)) / 1000 "
                                 "- used_memory_size",
    "ix_host_nodes_free_cpu": "(CAST(offering_cpu_cores AS BIGINT) * "
                              "coalesce(cpu_allocation_ratio_milli, 1000)) / 1000 "
                              "- used_cpu_cores",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, free in FREE.items():
        op.execute(f"CREATE INDEX {name} ON host_nodes (({free}) DESC, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in FREE:
        op.execute(f"DROP INDEX {name}")
