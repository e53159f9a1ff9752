"""LangGraph store items: their value as ``jsonb`` too, for filters, and namespaces in
byte order, for prefixes (PostgreSQL); a partial expiry index.

``lg_store_items.value`` is the JSON text exactly as written (its checksum is of those
bytes). A search with a ``filter`` compared ``CAST(value AS jsonb)`` members, parsing
every candidate row's text on every search: for a namespace of a few hundred items,
most of a search's server time. ``value_jsonb`` is a stored generated column, the same
cast done once per write; filters read it. It is not in the models (SQLite reads the
text with its ``json_*`` functions and has no such column): ``persistence.migrations``
names it among the PostgreSQL-only columns its drift check leaves out.

Adding a stored generated column rewrites the table (under its ACCESS EXCLUSIVE lock:
on a large store, plan the upgrade like any table rewrite). The downgrade drops it.

PostgreSQL: ``namespace`` takes the collation ``"C"`` (byte order), so that its primary
key (tenant_id, namespace, key) serves a search or a namespace listing under a prefix
as a range: in byte order every namespace under ``a.b`` lies between ``a.b`` and
``a.b/``. In a database whose collation is linguistic that range is not contiguous, and
such a search read every item of the tenant. Equality is unchanged (every collation
PostgreSQL creates a database with is deterministic); the search's tie-break order on
namespace becomes byte order, SQLite's already (its collation is BINARY). The change
rebuilds the primary key; the downgrade gives the column the database's collation back.

``ix_lg_store_items_expires`` (tenant_id, expires_at) becomes partial, ``WHERE
expires_at IS NOT NULL`` (both backends), as migration 0006 made the states' expiry
indexes: an item without a TTL (most) no longer adds an index entry on every put, and
the sweep (``expires_at <= now``, which implies it) still uses it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEX, TABLE, COLUMNS = "ix_lg_store_items_expires", "lg_store_items", ["tenant_id", "expires_at"]
EXPIRING = sa.text("expires_at IS NOT NULL")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE lg_store_items ADD COLUMN value_jsonb jsonb "
            "GENERATED ALWAYS AS (CAST(value AS jsonb)) STORED"
        )
        op.execute('ALTER TABLE lg_store_items ALTER COLUMN namespace TYPE text COLLATE "C"')
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, COLUMNS, postgresql_where=EXPIRING, sqlite_where=EXPIRING)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, COLUMNS)
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE lg_store_items ALTER COLUMN namespace TYPE text COLLATE "default"')
        op.execute("ALTER TABLE lg_store_items DROP COLUMN value_jsonb")
