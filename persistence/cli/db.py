"""``persistence db``: migrations and the one-time runtime-role set-up."""

from __future__ import annotations

import os

import click

from persistence.cli._common import CliContext, emit, fail, pass_cli
from persistence.errors import ConfigurationError
from persistence.migrations import diff
from persistence.settings import mask_url

__all__ = ["register"]


@click.group("db")
def db_group() -> None:
    """Schema migrations and database roles."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@pass_cli
def upgrade(cli: CliContext, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head), as the owner."""
    cli.db.migrate(revision)
    _report(cli, "upgraded")


@db_group.command("downgrade")
@click.argument("revision")
@pass_cli
def downgrade(cli: CliContext, revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` removes every table of ours)."""
    cli.db.downgrade(revision)
    _report(cli, "downgraded")


@db_group.command("current")
@pass_cli
def current(cli: CliContext) -> None:
    """Show the current and head revisions."""
    _report(cli, None)


@db_group.command("check")
@pass_cli
def check(cli: CliContext) -> None:
    """Exit non-zero unless the schema is at head and matches the models."""
    db = cli.db
    current_rev, head_rev = db.current_revision(), db.head_revision()
    if current_rev != head_rev:
        fail(f"schema is at {current_rev or 'base'}, head is {head_rev}: run `db upgrade`")
    differences = diff(db.owner_engine)
    if differences:
        fail(f"schema differs from the models in {len(differences)} place(s): {differences[0]}")
    emit(cli, {"revision": current_rev, "status": "ok"})


@db_group.command("create-runtime-role")
@click.argument("name")
@click.option(
    "--password-env",
    metavar="VAR",
    default=None,
    help="Set the role's password from this environment variable.",
)
@click.option(
    "--no-create", is_flag=True, help="Only grant: the role exists already (made by a DBA)."
)
@click.option("--print-sql", is_flag=True, help="Print the SQL without running it.")
@pass_cli
def create_runtime_role(
    cli: CliContext, name: str, password_env: str | None, no_create: bool, print_sql: bool
) -> None:
    """Create the runtime role NAME (if missing) and grant it what services need.

    Runs as the owner (--owner-url), which needs CREATEROLE to create the role; else a
    DBA creates it and you pass --no-create. The role may log in but is not a
    superuser, cannot bypass row-level security and owns nothing: the owner, a member
    of it, a superuser or a BYPASSRLS role is refused. Idempotent: run it again after
    every upgrade. Prints the SQL (passwords masked).
    """
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise ConfigurationError(f"environment variable {password_env} is not set or empty")
    statements = cli.db.grant_runtime_role(
        name, password=password, create=not no_create, execute=not print_sql
    )
    if cli.as_json:
        emit(cli, {"role": name, "executed": not print_sql, "sql": statements})
        return
    for statement in statements:
        click.echo(f"{statement};")
    if not print_sql:
        click.echo(f"-- runtime role {name} is ready", err=True)


@db_group.group("scope-key")
def scope_key_group() -> None:
    """Scope signing keys: add one, list them, retire one (docs/tenancy.md)."""


@scope_key_group.command("add")
@click.argument("key_id", required=False)
@pass_cli
def scope_key_add(cli: CliContext, key_id: str | None) -> None:
    """Add a new random key (KEY_ID default: k and the UTC time) and print it once, as
    the services' PERSISTENCE_SCOPE_KEY takes it."""
    with cli.db.admin() as admin:
        key = admin.scope_keys.add(key_id)
    emit(cli, {"id": key.id, "scope_key": key.text()})
    if not cli.as_json:
        click.echo(
            "-- set PERSISTENCE_SCOPE_KEY to scope_key on every service; it is not shown again",
            err=True,
        )


@scope_key_group.command("list")
@pass_cli
def scope_key_list(cli: CliContext) -> None:
    """Every key (never its secret), oldest first, retired ones too."""
    with cli.db.admin() as admin:
        keys = admin.scope_keys.list()
    emit(cli, keys, ["id", "created_at", "retired_at"])


@scope_key_group.command("retire")
@click.argument("key_id")
@pass_cli
def scope_key_retire(cli: CliContext, key_id: str) -> None:
    """Retire KEY_ID: every token it signed is refused from now on (units of work of
    services still signing with it, access descriptors it issued)."""
    with cli.db.admin() as admin:
        record = admin.scope_keys.retire(key_id)
    emit(cli, record)


def _report(cli: CliContext, action: str | None) -> None:
    db = cli.db
    row: dict[str, object] = {
        "database": mask_url(db.settings.owner_database_url or db.settings.database_url),
        "current": db.current_revision(),
        "head": db.head_revision(),
    }
    if action is not None:
        row = {"action": action, **row}
    emit(cli, row)


def register(group: click.Group) -> None:
    group.add_command(db_group)
