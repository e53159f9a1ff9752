"""Store items and artifacts carry a version, so the read cache can order what it holds
(docs/cache.md).

Every write of an item sets ``version`` to the clock in microseconds (PostgreSQL's; on
SQLite the writer's), or to one above the item's last version when the clock has not
moved past it: per key the versions only grow, also across a delete and a new write of
the key, unless the clock is set back (then the cache reads such a key from the
database until it is written again). Rows written before this revision start at 0;
their next write gives them a real version.

PostgreSQL adds a column with a constant default without rewriting the table. SQLite
rebuilds ``artifacts`` to put the column before ``payload``, which stays last (see
migration 0003: a large payload is streamed, and a column after it would be read by
walking the payload's overflow pages).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _version() -> sa.Column[int]:
    return sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("0"))


def upgrade() -> None:
    op.add_column("store_items", _version())
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("artifacts", _version())
        return
    with op.batch_alter_table("artifacts", recreate="always") as batch:
        batch.add_column(_version(), insert_before="payload")


def downgrade() -> None:
    for table in ("artifacts", "store_items"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version")
