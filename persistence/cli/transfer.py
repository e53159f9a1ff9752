"""``persistence export``, ``import`` and ``diff``: a tenant scope as a reviewable directory."""

from __future__ import annotations

from pathlib import Path

import click

from persistence.cli._common import CliContext, emit, pass_cli, scope_options
from persistence.transfer import diff_scope, export_scope, import_scope

__all__ = ["register"]

_PATH = click.Path(path_type=Path, file_okay=False)


@click.command("export")
@scope_options
@click.argument("dest", type=_PATH)
@pass_cli
def export_command(cli: CliContext, tenant: str, workspace: str, dest: Path) -> None:
    """Write the workflows, artifacts and states of a workspace to directory DEST."""
    export_scope(cli.db, tenant, workspace, dest)
    click.echo(f"exported {tenant}/{workspace} to {dest}", err=True)


@click.command("import")
@scope_options
@click.argument("src", type=_PATH)
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@pass_cli
def import_command(cli: CliContext, tenant: str, workspace: str, src: Path, dry_run: bool) -> None:
    """Validate directory SRC completely, then import it in one transaction."""
    report = import_scope(cli.db, tenant, workspace, src, dry_run=dry_run)
    rows = [
        {"section": name, "objects": report.objects[name], "written": report.written[name]}
        for name in report.objects
    ]
    emit(cli, rows, ("section", "objects", "written"))
    if dry_run:
        click.echo("dry run: nothing was written", err=True)


@click.command("diff")
@scope_options
@click.argument("src", type=_PATH)
@pass_cli
@click.pass_context
def diff_command(
    ctx: click.Context, cli: CliContext, tenant: str, workspace: str, src: Path
) -> None:
    """Compare directory SRC with the workspace (by checksum). Exit 0: equal, 1: different."""
    entries = diff_scope(cli.db, tenant, workspace, src)
    rows = [{"status": e.status, "section": e.section, "key": e.key} for e in entries]
    if rows or cli.as_json:
        emit(cli, rows, ("status", "section", "key"))
    else:
        click.echo("no differences", err=True)
    ctx.exit(1 if entries else 0)


def register(group: click.Group) -> None:
    for command in (export_command, import_command, diff_command):
        group.add_command(command)
