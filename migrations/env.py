"""Alembic environment: runs on a connection handed in by Database.migrate(), or on its own."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from persistence.models import metadata

VERSION_TABLE = "persistence_alembic_version"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Plain `alembic upgrade head`: build an owner engine from the environment.
    from persistence.database import Database
    from persistence.settings import Settings

    with Database(Settings()) as db, db.owner_engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
