"""``persistence demo``: a short tour of tenant isolation on the configured database."""

from __future__ import annotations

import click

from persistence.cli._common import CliContext, emit, pass_cli
from persistence.database import Database
from persistence.errors import AlreadyExistsError, NotFoundError
from persistence.settings import mask_url

__all__ = ["DEMO_TENANTS", "register"]

#: The demo's tenants and their extra workspaces; reused when they exist already.
DEMO_TENANTS = {"demo-acme": "research", "demo-globex": "support"}


def _ensure_tenants(db: Database) -> list[str]:
    """Create the demo tenants and workspaces, or reuse them (the demo runs twice)."""
    lines = []
    with db.admin() as admin:
        for slug, workspace in DEMO_TENANTS.items():
            try:
                admin.tenants.create(slug, name=f"Demo {slug.removeprefix('demo-').title()}")
                lines.append(f"created tenant {slug} (workspace default)")
            except AlreadyExistsError:
                lines.append(f"reused tenant {slug}")
            if admin.tenants.get(slug).status != "active":
                admin.tenants.resume(slug)
            try:
                admin.workspaces.create(slug, workspace)
                lines.append(f"created workspace {slug}/{workspace}")
            except AlreadyExistsError:
                lines.append(f"reused workspace {slug}/{workspace}")
    return lines


def _isolation(db: Database) -> list[str]:
    """Each tenant opens its own workspace and fails to open the other's."""
    lines = []
    (a, a_ws), (b, b_ws) = DEMO_TENANTS.items()
    for mine, own_ws, other_ws in ((a, a_ws, b_ws), (b, b_ws, a_ws)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            lines.append(f"{mine}: unit of work on {uow.tenant.slug}/{uow.workspace.slug}")
        try:
            with db.unit_of_work(tenant=mine, workspace=other_ws):
                lines.append(f"{mine}: UNEXPECTED access to workspace {other_ws}")
        except NotFoundError:
            lines.append(f"{mine}: cannot see the other tenant's workspace {other_ws!r}")
    return lines


def _states(db: Database) -> list[str]:
    """Each tenant saves a state; the other tenant cannot load it under the same id."""
    lines = []
    (a, a_ws), (b, b_ws) = DEMO_TENANTS.items()
    for mine, own_ws in ((a, a_ws), (b, b_ws)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            meta = uow.states.save(f"{mine}-plan", {"owner": mine, "steps": ["plan", "act"]})
            lines.append(f"{mine}: saved state {meta.state_id!r} version {meta.version}")
    for mine, own_ws, other in ((a, a_ws, b), (b, b_ws, a)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            own = uow.states.load(f"{mine}-plan")
            theirs = uow.states.load(f"{other}-plan")
        owner = own.state["owner"] if own is not None else None
        lines.append(f"{mine}: loads its own state (owner {owner})")
        seen = "cannot load" if theirs is None else "UNEXPECTEDLY loaded"
        lines.append(f"{mine}: {seen} the other tenant's state {other + '-plan'!r}")
    return lines


@click.command("demo")
@pass_cli
def demo(cli: CliContext) -> None:
    """Migrate, create two tenants with workspaces and show each sees only its own data.

    Uses the configured database (default: the embedded SQLite file); safe to re-run.
    """
    db = cli.db
    lines = [f"database {mask_url(db.settings.database_url)}"]
    db.migrate()
    lines.append(f"migrated to {db.current_revision()}")
    lines += _ensure_tenants(db)
    lines += _isolation(db)
    lines += _states(db)
    with db.admin() as admin:
        tenants = [t for t in admin.tenants.list() if t.slug in DEMO_TENANTS]
    if cli.as_json:
        emit(cli, {"steps": lines, "tenants": tenants})
        return
    for line in lines:
        click.echo(line)
    click.echo("")
    emit(cli, tenants, ("slug", "name", "status", "id"))


def register(group: click.Group) -> None:
    group.add_command(demo)
