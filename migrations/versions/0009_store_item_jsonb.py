"""PostgreSQL: LangGraph store items carry their value as ``jsonb`` too, for filters.

``lg_store_items.value`` is the JSON text exactly as written (its checksum is of those
bytes). A search with a ``filter`` compared ``CAST(value AS jsonb)`` members, parsing
every candidate row's text on every search: for a namespace of a few hundred items,
most of a search's server time. ``value_jsonb`` is a stored generated column, the same
cast done once per write; filters read it. It is not in the models (SQLite reads the
text with its ``json_*`` functions and has no such column): ``persistence.migrations``
names it among the PostgreSQL-only columns its drift check leaves out.

Adding a stored generated column rewrites the table (under its ACCESS EXCLUSIVE lock:
on a large store, plan the upgrade like any table rewrite). The downgrade drops it.
SQLite: nothing changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE lg_store_items ADD COLUMN value_jsonb jsonb "
            "GENERATED ALWAYS AS (CAST(value AS jsonb)) STORED"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lg_store_items DROP COLUMN value_jsonb")
