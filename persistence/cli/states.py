"""``persistence state ...`` (inspect and repair states) and ``persistence gc``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import click

from persistence.cli._common import CliContext, emit, fail, pass_cli, scope_options
from persistence.errors import TenantSuspendedError
from persistence.records import StateVersion
from persistence.uow import UnitOfWork

__all__ = ["GC_STEPS", "GcStep", "register", "register_gc_step"]

VERSION_COLUMNS = (
    "state_id",
    "version",
    "parent_version",
    "created_at",
    "expires_at",
    "raw_size",
    "stored_size",
    "codec",
    "tags",
)


@dataclass(frozen=True)
class GcStep:
    """One purge step of ``persistence gc``: ``run(uow, batch_size)`` deletes expired
    data of one tenant + workspace in bounded batches and returns how much it deleted."""

    name: str
    run: Callable[[UnitOfWork, int], int]


def _purge_states(uow: UnitOfWork, batch_size: int) -> int:
    return uow.states.purge_expired(batch_size)


#: Every step ``persistence gc`` runs, in order; other aggregates append theirs with
#: :func:`register_gc_step` from their CLI module's ``register``.
GC_STEPS: list[GcStep] = [GcStep("expired states", _purge_states)]


def register_gc_step(step: GcStep) -> None:
    """Add a purge step to ``persistence gc`` (idempotent by name)."""
    if all(existing.name != step.name for existing in GC_STEPS):
        GC_STEPS.append(step)


@click.group("state")
def state_group() -> None:
    """Inspect, roll back and delete versioned states of a workspace."""


@state_group.command("list")
@scope_options
@click.option("--prefix", default=None, help="Only state ids starting with this.")
@click.option("--tag", "tags", multiple=True, help="Only states tagged so (repeatable).")
@click.option("--match", type=click.Choice(["all", "any"]), default="all", show_default=True)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@pass_cli
def state_list(
    cli: CliContext,
    tenant: str,
    workspace: str,
    prefix: str | None,
    tags: tuple[str, ...],
    match: str,
    limit: int,
    cursor: str | None,
) -> None:
    """List the latest version of each live state (by state id)."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        if tags:
            if prefix is not None:
                fail("use either --prefix or --tag, not both")
            page = uow.states.search_by_tags(tags, match, limit=limit, cursor=cursor)  # type: ignore[arg-type]
        else:
            page = uow.states.list(prefix, limit=limit, cursor=cursor)
    _emit_page(cli, page.items, page.next_cursor)


def _emit_page(cli: CliContext, items: list[StateVersion], next_cursor: str | None) -> None:
    if cli.as_json:
        emit(cli, {"items": items, "next_cursor": next_cursor})
        return
    emit(cli, items, VERSION_COLUMNS)
    if next_cursor:
        click.echo(f"next page: --cursor {next_cursor}")


@state_group.command("show")
@scope_options
@click.argument("state_id")
@click.option("--version", type=int, default=None, help="A version (default: the latest).")
@pass_cli
def state_show(
    cli: CliContext, tenant: str, workspace: str, state_id: str, version: int | None
) -> None:
    """Show one version of STATE_ID: its metadata and its value."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        loaded = uow.states.load(state_id, version)
    if loaded is None:
        what = f"version {version} of state" if version is not None else "state"
        fail(f"{what} {state_id!r} does not exist (or has expired)")
        return
    if cli.as_json:
        emit(cli, {"meta": loaded.meta, "state": loaded.state})
        return
    emit(cli, loaded.meta, (*VERSION_COLUMNS, "checksum", "metadata"))
    click.echo("")
    click.echo(json.dumps(loaded.state, ensure_ascii=False, indent=2))


@state_group.command("history")
@scope_options
@click.argument("state_id")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@pass_cli
def state_history(
    cli: CliContext, tenant: str, workspace: str, state_id: str, limit: int, cursor: str | None
) -> None:
    """List the versions of STATE_ID, newest first."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        page = uow.states.list_versions(state_id, limit=limit, cursor=cursor)
    _emit_page(cli, page.items, page.next_cursor)


@state_group.command("rollback")
@scope_options
@click.argument("state_id")
@click.argument("to_version", type=int)
@pass_cli
def state_rollback(
    cli: CliContext, tenant: str, workspace: str, state_id: str, to_version: int
) -> None:
    """Write a new version of STATE_ID equal to TO_VERSION (history is kept)."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        meta = uow.states.rollback(state_id, to_version)
    emit(cli, meta, VERSION_COLUMNS)


@state_group.command("delete")
@scope_options
@click.argument("state_id")
@click.option("--version", type=int, default=None, help="Delete only this version.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def state_delete(
    cli: CliContext, tenant: str, workspace: str, state_id: str, version: int | None, yes: bool
) -> None:
    """Delete STATE_ID (every version and checkpoint), or one --version of it."""
    what = f"version {version} of state {state_id!r}" if version else f"state {state_id!r}"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    with cli.db.unit_of_work(tenant, workspace) as uow:
        if version is None:
            uow.states.delete(state_id)
        else:
            uow.states.delete_version(state_id, version)
    emit(cli, {"deleted": what})


@click.command("gc")
@click.option("--tenant", "-t", "only", default=None, help="Only this tenant (default: all).")
@click.option(
    "--batch-size", type=int, default=None, help="Rows per batch (default: gc_batch_size)."
)
@pass_cli
def gc(cli: CliContext, only: str | None, batch_size: int | None) -> None:
    """Purge expired data of every tenant and workspace, in bounded batches.

    Each step runs in its own transaction per workspace; suspended tenants are skipped.
    """
    size = batch_size if batch_size is not None else cli.db.settings.gc_batch_size
    if size < 1:
        fail("--batch-size must be at least 1")
    with cli.db.admin() as admin:
        tenants = [admin.tenants.get(only)] if only else admin.tenants.list()
        scopes = [
            (t.slug, w.slug, t.status) for t in tenants for w in admin.workspaces.list(t.slug)
        ]
    rows = []
    for tenant, workspace, status in scopes:
        for step in GC_STEPS:
            rows.append(_run_step(cli, step, tenant, workspace, status, size))
    emit(cli, rows, ("step", "tenant", "workspace", "deleted", "note"))


def _run_step(
    cli: CliContext, step: GcStep, tenant: str, workspace: str, status: str, size: int
) -> dict[str, object]:
    row: dict[str, object] = {"step": step.name, "tenant": tenant, "workspace": workspace}
    if status != "active":
        return {**row, "deleted": 0, "note": "skipped: tenant suspended"}
    try:
        with cli.db.unit_of_work(tenant, workspace) as uow:
            deleted = step.run(uow, size)
    except TenantSuspendedError:  # suspended between listing and purging
        return {**row, "deleted": 0, "note": "skipped: tenant suspended"}
    return {**row, "deleted": deleted, "note": ""}


def register(group: click.Group) -> None:
    group.add_command(state_group)
    group.add_command(gc)
