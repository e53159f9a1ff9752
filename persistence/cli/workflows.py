"""``persistence workflow``: list, show and search the workflows of a workspace."""

from __future__ import annotations

import click

from persistence.cli._common import CliContext, emit, pass_cli, scope_options

__all__ = ["register"]

COLUMNS = ("name", "revision", "description", "tags", "created_at")


@click.group("workflow")
def workflow_group() -> None:
    """Read the workflows of a workspace (sources are shown, never run)."""


@workflow_group.command("list")
@scope_options
@pass_cli
def workflow_list(cli: CliContext, tenant: str, workspace: str) -> None:
    """List the latest revision of every workflow."""
    rows = []
    with cli.db.unit_of_work(tenant, workspace) as uow:
        cursor = None
        while True:
            page = uow.workflows.list(limit=500, cursor=cursor)
            rows += [r.model_dump(exclude={"source"}) for r in page.items]
            if (cursor := page.next_cursor) is None:
                break
    emit(cli, rows, COLUMNS)


@workflow_group.command("show")
@scope_options
@click.argument("name")
@click.option("--revision", "-r", type=int, default=None, help="Default: the latest.")
@click.option("--source", "source_only", is_flag=True, help="Print only the source.")
@pass_cli
def workflow_show(
    cli: CliContext,
    tenant: str,
    workspace: str,
    name: str,
    revision: int | None,
    source_only: bool,
) -> None:
    """Show one revision of workflow NAME."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        record = uow.workflows.get(name, revision)
    if source_only:
        click.echo(record.source, nl=False)
    else:
        emit(cli, record, (*COLUMNS, "checksum", "source"))


@workflow_group.command("search")
@scope_options
@click.argument("query")
@click.option("--limit", default=10, show_default=True)
@pass_cli
def workflow_search(cli: CliContext, tenant: str, workspace: str, query: str, limit: int) -> None:
    """Find workflows by name, description and tags, best match first."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        found = uow.workflows.search(query, limit=limit)
    emit(cli, [r.model_dump(exclude={"source"}) for r in found], COLUMNS)


def register(group: click.Group) -> None:
    group.add_command(workflow_group)
