"""``persistence langgraph``: a tenant's retention of LangGraph checkpoints; and the
``persistence gc`` steps that apply it and sweep the LangGraph store's expired items.
Registered only when LangGraph is installed (``persistence[langgraph]``)."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import click

from persistence.cli._common import CliContext, emit, pass_cli
from persistence.cli.states import GcStep, register_gc_step
from persistence.uow import UnitOfWork

__all__ = ["register"]

COLUMNS = ("tenant", "keep_last", "idle_days")
_tenant = click.option("--tenant", "-t", required=True, help="Tenant slug.")


@click.group("langgraph")
def langgraph_group() -> None:
    """LangGraph checkpoints of a tenant (persistence.langgraph): retention."""


@langgraph_group.group("retention")
def retention_group() -> None:
    """Keep the last N checkpoints per thread; drop threads idle for D days
    (applied by `persistence gc`)."""


def _row(tenant: str, retention: object) -> dict[str, object]:
    keep = getattr(retention, "keep_last", None)
    idle = getattr(retention, "idle", None)
    days = None if idle is None else round(idle.total_seconds() / 86400, 3)
    return {"tenant": tenant, "keep_last": keep, "idle_days": days}


@retention_group.command("show")
@_tenant
@pass_cli
def retention_show(cli: CliContext, tenant: str) -> None:
    """Print the tenant's retention (empty: keep everything)."""
    from persistence.langgraph._retention import get_retention

    with cli.db.unit_of_work(tenant) as uow:
        emit(cli, [_row(tenant, get_retention(uow.scope))], COLUMNS)


@retention_group.command("set")
@_tenant
@click.option("--keep-last", type=int, default=None, help="Checkpoints kept per thread namespace.")
@click.option("--idle-days", type=float, default=None, help="Drop threads idle this long.")
@pass_cli
def retention_set(
    cli: CliContext, tenant: str, keep_last: int | None, idle_days: float | None
) -> None:
    """Set the tenant's retention (an option left out: no such limit)."""
    from persistence.langgraph._retention import set_retention

    idle = None if idle_days is None else timedelta(days=idle_days)
    with cli.db.unit_of_work(tenant) as uow:
        emit(cli, [_row(tenant, set_retention(uow.scope, keep_last=keep_last, idle=idle))], COLUMNS)


@retention_group.command("clear")
@_tenant
@pass_cli
def retention_clear(cli: CliContext, tenant: str) -> None:
    """Remove the tenant's retention: keep everything."""
    from persistence.langgraph._retention import clear_retention

    with cli.db.unit_of_work(tenant) as uow:
        clear_retention(uow.scope)
    emit(cli, [_row(tenant, None)], COLUMNS)


def _apply_retention(uow: UnitOfWork, batch_size: int) -> int:
    from persistence.langgraph._retention import apply_retention

    return apply_retention(uow.scope, batch_size)


def _sweep_store(uow: UnitOfWork, batch_size: int) -> int:
    """The tenant's expired store items (the store is per tenant: swept once, with the
    tenant's ``default`` workspace)."""
    from persistence.langgraph._store import sweep_expired

    return sweep_expired(uow.scope, batch_size) if uow.workspace.slug == "default" else 0


def register(group: click.Group) -> None:
    if importlib.util.find_spec("langgraph") is None:
        return
    group.add_command(langgraph_group)
    register_gc_step(GcStep("langgraph checkpoints (retention)", _apply_retention))
    register_gc_step(GcStep("langgraph store (expired)", _sweep_store))
