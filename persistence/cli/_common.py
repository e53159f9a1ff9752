"""What every CLI command shares: the Database from the options, output, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import click
from pydantic import BaseModel

from persistence.database import Database
from persistence.settings import Settings

__all__ = ["CliContext", "emit", "pass_cli", "scope_options"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    database_url: str | None
    owner_url: str | None
    redis_url: str | None
    as_json: bool
    _db: Database | None = field(default=None, repr=False)

    @property
    def db(self) -> Database:
        """The Database named by the options, else by ``PERSISTENCE_*`` (built once)."""
        if self._db is None:
            overrides: dict[str, Any] = {}
            if self.database_url:
                overrides["database_url"] = self.database_url
            if self.owner_url:
                overrides["owner_database_url"] = self.owner_url
            if self.redis_url:
                overrides["redis_url"] = self.redis_url
            self._db = Database(Settings(**overrides))
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


pass_cli = click.make_pass_decorator(CliContext)


def scope_options(fn: F) -> F:
    """``--tenant`` (required) and ``--workspace`` (default ``default``)."""
    fn = click.option(
        "--workspace", "-w", default="default", show_default=True, help="Workspace slug."
    )(fn)
    return click.option("--tenant", "-t", required=True, help="Tenant slug.")(fn)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value.model_dump().items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def emit(cli: CliContext, data: Any, columns: Sequence[str] | None = None) -> None:
    """Print ``data`` (a record, a mapping or a list of them) as a table, or JSON with --json."""
    if cli.as_json:
        click.echo(json.dumps(_plain(data), ensure_ascii=False, indent=2))
        return
    rows: Iterable[Any] = data if isinstance(data, list) else [data]
    plain_rows = [_plain(row) for row in rows]
    if not plain_rows:
        click.echo("(none)")
        return
    if not isinstance(plain_rows[0], dict):
        for row in plain_rows:
            click.echo(_cell(row))
        return
    cols = list(columns) if columns else list(plain_rows[0].keys())
    table = [[_cell(row.get(c)) for c in cols] for row in plain_rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, a non-zero exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
