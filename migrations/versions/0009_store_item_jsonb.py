"""LangGraph store items: their value as ``jsonb`` too, for filters, and an index for
namespace prefixes (PostgreSQL); a partial expiry index.

``lg_store_items.value`` is the JSON text exactly as written (its checksum is of those
bytes). A search with a ``filter`` compared ``CAST(value AS jsonb)`` members, parsing
every candidate row's text on every search: for a namespace of a few hundred items,
most of a search's server time. ``value_jsonb`` is a stored generated column, the same
cast done once per write; filters read it. It is not in the models (SQLite reads the
text with its ``json_*`` functions and has no such column): ``persistence.migrations``
names it among the PostgreSQL-only columns its drift check leaves out.

Adding a stored generated column rewrites the table (under its ACCESS EXCLUSIVE lock:
on a large store, plan the upgrade like any table rewrite). The downgrade drops it.

PostgreSQL: ``ix_lg_store_items_namespace`` (tenant_id, namespace in collation "C"):
a search or a namespace listing under a prefix reads the prefix's range of it (in byte
order every namespace under ``a.b`` lies between ``a.b`` and ``a.b/``), where it read
every item of the tenant. The primary key cannot serve that range in a database whose
collation is not bytewise; SQLite's primary key is (its collation is BINARY). Like
``value_jsonb``, it is not in the models, and the drift check leaves it out by name.

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
NAMESPACE_INDEX = "ix_lg_store_items_namespace"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE lg_store_items ADD COLUMN value_jsonb jsonb "
            "GENERATED ALWAYS AS (CAST(value AS jsonb)) STORED"
        )
        op.execute(
            f'CREATE INDEX {NAMESPACE_INDEX} ON lg_store_items (tenant_id, namespace COLLATE "C")'
        )
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, COLUMNS, postgresql_where=EXPIRING, sqlite_where=EXPIRING)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, COLUMNS)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX {NAMESPACE_INDEX}")
        op.execute("ALTER TABLE lg_store_items DROP COLUMN value_jsonb")
