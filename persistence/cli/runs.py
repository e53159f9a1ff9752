"""``persistence run``: list, show, history and purge the runs of a workspace."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import click

from persistence.cli._common import CliContext, emit, pass_cli, scope_options
from persistence.errors import NotFoundError
from persistence.repositories.runs import ALLOWED_FROM, FINISHED

__all__ = ["register"]

RUN_COLUMNS = ("id", "workflow", "status", "attempts", "worker", "created_at", "updated_at")
HISTORY_COLUMNS = ("seq", "status", "at", "worker", "note")
_AGE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d`` or ``2w`` as a timedelta."""
    match = _AGE.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r}: use a number and a unit, like 90s, 15m, 12h, 7d, 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@click.group("run")
def run_group() -> None:
    """Inspect and purge workflow runs."""


@run_group.command("list")
@scope_options
@click.option("--status", type=click.Choice(tuple(ALLOWED_FROM)), default=None)
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@pass_cli
def run_list(
    cli: CliContext,
    tenant: str,
    workspace: str,
    status: str | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List runs, newest first (one page; --json shows next_cursor)."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        page = uow.runs.list(status, workflow, limit=limit, cursor=cursor)
    if cli.as_json:
        emit(cli, page)
        return
    emit(cli, page.items, RUN_COLUMNS)
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}")


@run_group.command("show")
@scope_options
@click.argument("run_id")
@pass_cli
def run_show(cli: CliContext, tenant: str, workspace: str, run_id: str) -> None:
    """Show run RUN_ID with its result or exception."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        record = uow.runs.get(run_id)
        shown: dict[str, Any] = record.model_dump()
        try:
            shown["result"] = uow.runs.get_result(run_id)
        except NotFoundError:
            shown["result"] = None
        exception = uow.runs.get_exception(run_id)
        shown["exception"] = exception.model_dump() if exception else None
    if cli.as_json:
        emit(cli, shown)
        return
    emit(cli, record, (*RUN_COLUMNS, "parent_run_id", "tags"))
    click.echo(f"args: {json.dumps(record.args)}")
    if shown["result"] is not None or record.status == "succeeded":
        click.echo(f"result: {json.dumps(shown['result'])}")
    if exception is not None:
        click.echo(f"exception: {exception.type_name}: {exception.message}")
        click.echo(exception.traceback.rstrip())


@run_group.command("history")
@scope_options
@click.argument("run_id")
@pass_cli
def run_history(cli: CliContext, tenant: str, workspace: str, run_id: str) -> None:
    """Show every status change of run RUN_ID, oldest first."""
    with cli.db.unit_of_work(tenant, workspace) as uow:
        entries = uow.runs.history(run_id)
    emit(cli, entries, HISTORY_COLUMNS)


@run_group.command("purge")
@scope_options
@click.option("--older-than", "older_than", required=True, help="Age, like 7d, 12h, 30m.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(FINISHED),
    help="Finished status to purge (repeatable; default all finished).",
)
@click.option("--batch-size", type=int, default=None, help="Runs per DELETE statement.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def run_purge(
    cli: CliContext,
    tenant: str,
    workspace: str,
    older_than: str,
    statuses: tuple[str, ...],
    batch_size: int | None,
    yes: bool,
) -> None:
    """Delete finished runs older than --older-than, with their history and data."""
    age = parse_age(older_than)
    if not yes:
        click.confirm(f"Delete finished runs older than {older_than}?", abort=True)
    with cli.db.unit_of_work(tenant, workspace) as uow:
        deleted = uow.runs.purge(age, statuses or FINISHED, batch_size=batch_size)
    emit(cli, {"deleted": deleted})


def register(group: click.Group) -> None:
    group.add_command(run_group)
