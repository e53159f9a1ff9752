"""The ``persistence`` admin CLI: a thin shell over the programmatic API."""

from __future__ import annotations

import importlib
import sys

import click
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from persistence.cli._common import CliContext, fail
from persistence.errors import PersistenceError

__all__ = ["cli", "main"]

# Each module defines ``register(group)`` adding its commands.
_COMMAND_MODULES = (
    "db",
    "tenants",
    "demo",
    "transfer",
    "workflows",
    "states",
    "stores",
    "leases",
    "runs",
    "cache",
    "langgraph",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="PERSISTENCE_DATABASE_URL",
    default=None,
    help="Runtime database URL (default: PERSISTENCE_DATABASE_URL, else SQLite).",
)
@click.option(
    "--owner-url",
    envvar="PERSISTENCE_OWNER_DATABASE_URL",
    default=None,
    help="Owner URL for migrations and tenant administration.",
)
@click.option("--redis-url", envvar="PERSISTENCE_REDIS_URL", default=None, help="Redis URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    owner_url: str | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Administer persistence: migrations, roles, tenants, workspaces and data."""
    state = CliContext(database_url, owner_url, redis_url, as_json)
    ctx.obj = state
    ctx.call_on_close(state.close)


for _name in _COMMAND_MODULES:
    importlib.import_module(f"persistence.cli.{_name}").register(cli)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error is one line on stderr and a non-zero exit."""
    try:
        result = cli.main(args=argv, prog_name="persistence", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.exceptions.NoArgsIsHelpError as exc:
        # `persistence` or `persistence tenant` alone asks for the help: not an error.
        click.echo(exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code or 2)
    except PersistenceError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except ValidationError as exc:
        fail(f"invalid configuration: {exc.errors()[0]['msg']}")
    except OSError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error: {str(exc).strip().splitlines()[0]}")
    except Exception as exc:  # never a traceback for the operator
        fail(f"unexpected {type(exc).__name__}: {exc}")
    sys.exit(result if isinstance(result, int) else 0)
