"""``persistence cache stats|flush``: the read cache in Redis (docs/cache.md)."""

from __future__ import annotations

import uuid

import click

from persistence.cli._common import CliContext, emit, pass_cli

__all__ = ["register"]

USAGE_COLUMNS = ("tenant", "tenant_id", "epoch", "entries", "tombstones", "bytes")


@click.group("cache")
def cache_group() -> None:
    """The shared read cache in Redis: what it holds, and flushing it."""


def _tenant_ids(cli: CliContext) -> dict[uuid.UUID, str]:
    with cli.db.admin() as admin:
        return {record.id: record.slug for record in admin.tenants.list()}


def _one(cli: CliContext, slug: str) -> uuid.UUID:
    with cli.db.admin() as admin:
        return admin.tenants.get(slug).id  # NotFoundError for an unknown slug


@cache_group.command("stats")
@click.option("--tenant", "-t", default=None, help="Only this tenant (slug).")
@pass_cli
def cache_stats(cli: CliContext, tenant: str | None) -> None:
    """Per tenant: its epoch, live entries, tombstones and bytes held in Redis.

    Entries filled under an earlier epoch are counted until they expire
    (``cache_ttl``); none of them is ever served.
    """
    from persistence._cache_admin import usage

    slugs = _tenant_ids(cli)
    only = _one(cli, tenant) if tenant is not None else None
    rows = [
        {"tenant": slugs.get(row.tenant_id, "(deleted)"), **row.model_dump()}
        for row in usage(cli.db, only)
    ]
    emit(cli, rows, USAGE_COLUMNS)


@cache_group.command("flush")
@click.option("--tenant", "-t", default=None, help="Only this tenant (slug).")
@pass_cli
def cache_flush(cli: CliContext, tenant: str | None) -> None:
    """Make cached entries unservable in every process at once, then delete them.

    Without ``--tenant``: every tenant of the database, and every tenant that
    still has keys in Redis.
    """
    from persistence._cache_admin import cached_tenants, flush

    if tenant is not None:
        targets = {_one(cli, tenant)}
    else:
        targets = set(_tenant_ids(cli)) | cached_tenants(cli.db)
    emit(cli, {"flushed": tenant or "*", **flush(cli.db, targets)})


def register(group: click.Group) -> None:
    group.add_command(cache_group)
