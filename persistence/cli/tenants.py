"""``persistence tenant`` and ``persistence workspace``: tenant administration."""

from __future__ import annotations

import click

from persistence.cli._common import CliContext, emit, pass_cli

__all__ = ["register"]

TENANT_COLUMNS = ("slug", "name", "status", "id", "created_at")
WORKSPACE_COLUMNS = ("slug", "name", "id", "created_at")


def _confirm(yes: bool, what: str) -> None:
    """Deleting is irreversible: ask, unless ``--yes`` (scripts) was given."""
    if not yes:
        click.confirm(f"Delete {what} and everything it owns?", abort=True)


@click.group("tenant")
def tenant_group() -> None:
    """Create, list, show, rename, suspend, resume and delete tenants."""


@tenant_group.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (default: the slug).")
@pass_cli
def tenant_create(cli: CliContext, slug: str, name: str | None) -> None:
    """Create tenant SLUG with its ``default`` workspace."""
    with cli.db.admin() as admin:
        record = admin.tenants.create(slug, name=name)
    emit(cli, record, TENANT_COLUMNS)


@tenant_group.command("list")
@pass_cli
def tenant_list(cli: CliContext) -> None:
    """List every tenant."""
    with cli.db.admin() as admin:
        records = admin.tenants.list()
    emit(cli, records, TENANT_COLUMNS)


@tenant_group.command("show")
@click.argument("slug")
@pass_cli
def tenant_show(cli: CliContext, slug: str) -> None:
    """Show tenant SLUG and its workspaces."""
    with cli.db.admin() as admin:
        record = admin.tenants.get(slug)
        workspaces = admin.workspaces.list(slug)
    if cli.as_json:
        emit(cli, {**record.model_dump(), "workspaces": workspaces})
        return
    emit(cli, record, TENANT_COLUMNS)
    click.echo("")
    emit(cli, workspaces, WORKSPACE_COLUMNS)


@tenant_group.command("rename")
@click.argument("slug")
@click.argument("name")
@pass_cli
def tenant_rename(cli: CliContext, slug: str, name: str) -> None:
    """Set the display NAME of tenant SLUG."""
    with cli.db.admin() as admin:
        record = admin.tenants.rename(slug, name)
    emit(cli, record, TENANT_COLUMNS)


@tenant_group.command("suspend")
@click.argument("slug")
@pass_cli
def tenant_suspend(cli: CliContext, slug: str) -> None:
    """Suspend tenant SLUG: its units of work are refused until it is resumed."""
    with cli.db.admin() as admin:
        record = admin.tenants.suspend(slug)
    emit(cli, record, TENANT_COLUMNS)


@tenant_group.command("resume")
@click.argument("slug")
@pass_cli
def tenant_resume(cli: CliContext, slug: str) -> None:
    """Resume suspended tenant SLUG."""
    with cli.db.admin() as admin:
        record = admin.tenants.resume(slug)
    emit(cli, record, TENANT_COLUMNS)


@tenant_group.command("delete")
@click.argument("slug")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def tenant_delete(cli: CliContext, slug: str, yes: bool) -> None:
    """Delete tenant SLUG and every row it owns."""
    with cli.db.admin() as admin:
        admin.tenants.get(slug)  # NotFoundError before asking
    _confirm(yes, f"tenant {slug!r}")
    with cli.db.admin() as admin:
        admin.tenants.delete(slug)
    emit(cli, {"deleted": "tenant", "slug": slug})


@click.group("workspace")
def workspace_group() -> None:
    """Create, list and delete the workspaces of a tenant."""


@workspace_group.command("create")
@click.option("--tenant", "-t", required=True, help="Tenant slug.")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (default: the slug).")
@pass_cli
def workspace_create(cli: CliContext, tenant: str, slug: str, name: str | None) -> None:
    """Create workspace SLUG in --tenant."""
    with cli.db.admin() as admin:
        record = admin.workspaces.create(tenant, slug, name=name)
    emit(cli, record, WORKSPACE_COLUMNS)


@workspace_group.command("list")
@click.option("--tenant", "-t", required=True, help="Tenant slug.")
@pass_cli
def workspace_list(cli: CliContext, tenant: str) -> None:
    """List the workspaces of --tenant."""
    with cli.db.admin() as admin:
        records = admin.workspaces.list(tenant)
    emit(cli, records, WORKSPACE_COLUMNS)


@workspace_group.command("delete")
@click.option("--tenant", "-t", required=True, help="Tenant slug.")
@click.argument("slug")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def workspace_delete(cli: CliContext, tenant: str, slug: str, yes: bool) -> None:
    """Delete workspace SLUG of --tenant and everything in it (not ``default``)."""
    with cli.db.admin() as admin:
        admin.workspaces.get(tenant, slug)  # NotFoundError before asking
    if slug != "default":
        _confirm(yes, f"workspace {slug!r} of tenant {tenant!r}")
    with cli.db.admin() as admin:
        admin.workspaces.delete(tenant, slug)
    emit(cli, {"deleted": "workspace", "tenant": tenant, "slug": slug})


def register(group: click.Group) -> None:
    group.add_command(tenant_group)
    group.add_command(workspace_group)
