"""Expiry indexes of states are partial (only rows that expire), so no load can use them.

On a table the planner has no statistics for (a fresh database, before the first
``ANALYZE``), ``ix_state_versions_expires_at`` (tenant_id, workspace_id, expires_at)
costs the same as the primary key for a load of one version, and the planner took it:
it then filtered every version of the state. A partial index (``WHERE expires_at IS
NOT NULL``) serves the purge (``expires_at <= now`` implies it) and can never serve a
load, which does not say ``expires_at IS NOT NULL``. The same for the heads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_state_heads_expires_at": "state_heads",
    "ix_state_versions_expires_at": "state_versions",
}
COLUMNS = ["tenant_id", "workspace_id", "expires_at"]
EXPIRING = sa.text("expires_at IS NOT NULL")


def upgrade() -> None:
    for name, table in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, COLUMNS, postgresql_where=EXPIRING, sqlite_where=EXPIRING)


def downgrade() -> None:
    for name, table in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, COLUMNS)
