"""``persistence lease list``: the leases a tenant holds now."""

from __future__ import annotations

import click

from persistence.cli._common import CliContext, emit, pass_cli
from persistence.locks import list_leases

__all__ = ["register"]

LEASE_COLUMNS = ("name", "holder", "fence", "remaining", "expires_at")


@click.group("lease")
def lease_group() -> None:
    """Leases (named, expiring, fenced locks)."""


@lease_group.command("list")
@click.option("--tenant", "-t", required=True, help="Tenant slug.")
@pass_cli
def lease_list(cli: CliContext, tenant: str) -> None:
    """Held leases of TENANT: holder (host/pid/token), fence, seconds remaining."""
    records = list_leases(cli.db, tenant)
    rows = [r.model_copy(update={"remaining": round(r.remaining, 3)}) for r in records]
    emit(cli, rows, LEASE_COLUMNS)


def register(group: click.Group) -> None:
    group.add_command(lease_group)
