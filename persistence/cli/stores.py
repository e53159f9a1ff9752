"""``persistence store``: list, read, write and delete the keys of a store."""

from __future__ import annotations

import json
from typing import Any

import click

from persistence.cli._common import CliContext, emit, fail, pass_cli, scope_options

__all__ = ["register"]

STORE_COLUMNS = ("name", "created_at")
ITEM_COLUMNS = ("key", "value")


_store_required = click.option("--store", "-s", "store", required=True, help="Store name.")
_store_optional = click.option("--store", "-s", "store", default=None, help="Store name.")


@click.group("store")
def store_group() -> None:
    """Key/value stores of a workspace (values are JSON)."""


@store_group.command("list")
@scope_options
@_store_optional
@pass_cli
def store_list(cli: CliContext, tenant: str, workspace: str, store: str | None) -> None:
    """List the workspace's stores, or with --store the keys and values of one store."""
    if store is None:
        with cli.db.unit_of_work(tenant, workspace) as uow:
            records, cursor = [], None
            while True:
                page = uow.list_stores(limit=1000, cursor=cursor)
                records += page.items
                if (cursor := page.next_cursor) is None:
                    break
        emit(cli, records, STORE_COLUMNS)
        return
    items = cli.db.store(tenant=tenant, workspace=workspace, name=store).items()
    rows = [{"key": key, "value": value} for key, value in items]
    emit(cli, {r["key"]: r["value"] for r in rows} if cli.as_json else rows, ITEM_COLUMNS)


@store_group.command("get")
@scope_options
@_store_required
@click.argument("key")
@pass_cli
def store_get(cli: CliContext, tenant: str, workspace: str, store: str, key: str) -> None:
    """Print the JSON value of KEY (exit 1 if the key is missing)."""
    value = cli.db.store(tenant=tenant, workspace=workspace, name=store).get(key, _MISSING)
    if value is _MISSING:
        fail(f"key {key!r} is not in store {store!r}")
    click.echo(json.dumps(value, ensure_ascii=False, indent=2 if cli.as_json else None))


@store_group.command("set")
@scope_options
@_store_required
@click.argument("key")
@click.argument("value")
@pass_cli
def store_set(
    cli: CliContext, tenant: str, workspace: str, store: str, key: str, value: str
) -> None:
    """Set KEY to VALUE, a JSON document (quote strings: '"red"')."""
    try:
        parsed = json.loads(value)
    except ValueError:
        fail(f"VALUE must be JSON, got {value!r} (quote strings: '\"{value}\"')")
    cli.db.store(tenant=tenant, workspace=workspace, name=store)[key] = parsed
    emit(cli, {"store": store, "key": key, "value": parsed}, ("store", "key", "value"))


@store_group.command("delete")
@scope_options
@_store_required
@click.argument("key", required=False)
@click.option("--yes", is_flag=True, help="Delete a whole store without asking.")
@pass_cli
def store_delete(
    cli: CliContext, tenant: str, workspace: str, store: str, key: str | None, yes: bool
) -> None:
    """Delete KEY from the store, or without KEY the whole store."""
    if key is not None:
        if cli.db.store(tenant=tenant, workspace=workspace, name=store).pop(key, _MISSING) is (
            _MISSING
        ):
            fail(f"key {key!r} is not in store {store!r}")
        emit(cli, {"deleted": "key", "store": store, "key": key})
        return
    if not yes:
        click.confirm(f"Delete store {store!r} and all its keys?", abort=True)
    with cli.db.unit_of_work(tenant, workspace) as uow:
        uow.delete_store(store)
    emit(cli, {"deleted": "store", "store": store})


_MISSING: Any = object()


def register(group: click.Group) -> None:
    group.add_command(store_group)
