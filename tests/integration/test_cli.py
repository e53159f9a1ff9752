"""The ``persistence`` CLI on SQLite and PostgreSQL: tables, --json, one-line errors.

Most commands run in-process through ``main()`` (the console script's entry point,
same error handling); a few run as real subprocesses to prove the installed script,
``python -m persistence`` and the environment variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from persistence import Database
from persistence.cli import main
from tests.conftest import unique_slug
from tests.fixtures.services import PostgresTarget
from tests.integration import test_migrations

CONSOLE_SCRIPT = Path(sys.executable).with_name("persistence")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def one_line_error(self) -> str:
        assert self.code != 0, self.out
        assert "Traceback" not in self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: ")
        return lines[0]


Cli = Callable[..., Result]


@pytest.fixture
def invoke(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``persistence ARGS`` in-process through ``main()``."""

    def call(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


@pytest.fixture
def run(db: Database, invoke: Cli) -> Cli:
    """Run the CLI against the test database of this backend (``json_output``: --json)."""
    urls = ["--database-url", db.settings.database_url]
    if db.settings.owner_database_url:
        urls += ["--owner-url", db.settings.owner_database_url]

    def call(*args: str, json_output: bool = False) -> Result:
        return invoke(*urls, *(["--json"] if json_output else []), *args)

    return call


def test_tenant_commands(run: Cli) -> None:
    slug = unique_slug()
    created = run("tenant", "create", slug, "--name", "Acme Inc", json_output=True).json()
    assert (created["slug"], created["name"], created["status"]) == (slug, "Acme Inc", "active")
    uuid.UUID(created["id"])

    table = run("tenant", "list")
    assert table.code == 0
    assert table.out.splitlines()[0].split()[:3] == ["SLUG", "NAME", "STATUS"]
    assert any(line.startswith(slug) for line in table.out.splitlines())
    assert slug in [t["slug"] for t in run("tenant", "list", json_output=True).json()]

    shown = run("tenant", "show", slug, json_output=True).json()
    assert [w["slug"] for w in shown["workspaces"]] == ["default"]
    assert "default" in run("tenant", "show", slug).out

    assert run("tenant", "rename", slug, "Acme Corp", json_output=True).json()["name"] == (
        "Acme Corp"
    )
    assert run("tenant", "suspend", slug, json_output=True).json()["status"] == "suspended"
    assert run("tenant", "resume", slug, json_output=True).json()["status"] == "active"
    deleted = run("tenant", "delete", slug, "--yes", json_output=True).json()
    assert deleted == {"deleted": "tenant", "slug": slug}
    run("tenant", "show", slug).one_line_error()


def test_workspace_commands(run: Cli) -> None:
    slug = unique_slug()
    assert run("tenant", "create", slug).code == 0
    made = run("workspace", "create", "--tenant", slug, "research", json_output=True).json()
    assert made["slug"] == "research" and made["name"] == "research"
    listed = run("workspace", "list", "-t", slug, json_output=True).json()
    assert [w["slug"] for w in listed] == ["default", "research"]
    assert "research" in run("workspace", "list", "-t", slug).out
    gone = run("workspace", "delete", "-t", slug, "research", "-y", json_output=True).json()
    assert gone == {"deleted": "workspace", "tenant": slug, "slug": "research"}
    assert [w["slug"] for w in run("workspace", "list", "-t", slug, json_output=True).json()] == [
        "default"
    ]


def test_errors_are_one_line_and_nothing_is_written(run: Cli) -> None:
    slug = unique_slug()
    assert run("tenant", "create", slug).code == 0
    before = run("tenant", "list", json_output=True).json()
    errors = {
        "not exist": ("tenant", "show", unique_slug("ghost")),
        "invalid tenant slug": ("tenant", "create", "Bad_Slug"),
        "already exists": ("tenant", "create", slug),
        "workspace 'default' already": ("workspace", "create", "-t", slug, "default"),
        "cannot be deleted": ("workspace", "delete", "-t", slug, "default", "--yes"),
        "workspace 'nope' does not exist": ("workspace", "delete", "-t", slug, "nope", "--yes"),
        "name must be": ("tenant", "rename", slug, " "),
        "No such command": ("tenant", "explode"),
        "Missing argument": ("tenant", "create"),
        "Missing option": ("workspace", "list"),
    }
    for expected, args in errors.items():
        assert expected in run(*args).one_line_error(), args
    assert run("tenant", "list", json_output=True).json() == before


def test_db_commands(run: Cli, db: Database) -> None:
    current = run("db", "current", json_output=True).json()
    assert current["current"] == current["head"] == db.head_revision()
    assert run("db", "check", json_output=True).json() == {
        "revision": db.head_revision(),
        "status": "ok",
    }
    upgraded = run("db", "upgrade", json_output=True).json()  # idempotent at head
    assert upgraded["action"] == "upgraded" and upgraded["current"] == upgraded["head"]
    assert "CURRENT" in run("db", "current").out


empty_pg = test_migrations.empty_pg  # a throwaway database owned by the owner role


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_db_upgrade_downgrade_on_an_empty_database(
    invoke: Cli, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    target = (
        request.getfixturevalue("empty_pg")
        if backend == "pg"
        else f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    )
    url = ["--database-url", target]
    assert invoke(*url, "--json", "db", "current").json()["current"] is None
    assert "schema is at base" in invoke(*url, "db", "check").one_line_error()
    assert invoke(*url, "db", "upgrade").code == 0
    assert invoke(*url, "db", "check").code == 0
    assert invoke(*url, "--json", "db", "downgrade", "base").json()["current"] is None
    assert "Missing argument" in invoke(*url, "db", "downgrade").one_line_error()
    assert invoke(*url, "db", "upgrade").code == 0


#: What every run of the demo tour shows (on SQLite and PostgreSQL, first run or not).
DEMO_TOUR_LINES = (
    "demo-acme: cannot see the other tenant's workspace 'support'",
    "demo-globex: cannot see the other tenant's workspace 'research'",
    "demo-acme: cannot load the other tenant's state 'demo-globex-plan'",
    "demo-globex: cannot load the other tenant's state 'demo-acme-plan'",
    "VersionConflictError (latest is ",
    "demo-acme: history of 'demo-acme-plan' (newest first): ",
    "demo-acme: saved workflow 'summarize_notes': revision ",
    "demo-acme: fetched 'summarize_notes' by name: revision ",
    "demo-acme: artifact 'demo/logo.bin' saved and loaded: b'\\x89PNG demo'",
    "demo-acme: artifact 'demo/report.json' saved and loaded as json",
    "demo-acme: store 'demo-memory': set and got 'greeting' = 'hello from demo-acme'",
    "demo-acme: store 'demo-memory': transaction(lock=True) incremented 'tour-count' to ",
    "demo-acme: demo-worker claimed run 'tour-",
    ": succeeded, result 'plan / act'",
    ": pending -> running -> succeeded",
    "demo-acme: a second acquire of 'demo-tour' is refused while it is held",
    "demo-acme: fenced store write with fence ",
    "demo-globex: holds its own lease 'demo-tour' at the same time",
    "demo-globex: cannot see demo-acme's state 'demo-acme-plan'",
    "demo-globex: cannot see demo-acme's workflow 'summarize_notes'",
    "demo-globex: cannot see demo-acme's artifact 'demo/report.json'",
    "demo-globex: cannot see demo-acme's run 'tour-",
    "demo-globex: cannot see demo-acme's store key demo-memory/greeting",
)


def _demo_numbers(text: str) -> dict[str, int]:
    """The numbers that move between two runs of the demo tour."""
    patterns = {
        "version": r"demo-acme: saved 'demo-acme-plan' again .*: version (\d+) \(parent (\d+)\)",
        "revision": r"saved workflow 'summarize_notes': revision (\d+)",
        "tour": r"incremented 'tour-count' to (\d+)",
        "run": r"demo-worker claimed run 'tour-(\d+)': running",
        "fence": r"acquired lease 'demo-tour' \((?:sql|redis) lease backend\): fence (\d+)",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        assert match, (key, text)
        found[key] = int(match.group(1))
        if key == "version":
            assert int(match.group(2)) == found[key] - 1  # a version's parent is the one before
    return found


def _assert_demo_tour(text: str) -> dict[str, int]:
    missing = [line for line in DEMO_TOUR_LINES if line not in text]
    assert not missing, text
    assert "UNEXPECTED" not in text and "skipped" not in text, text
    numbers = _demo_numbers(text)
    assert numbers["run"] == numbers["tour"]
    return numbers


def test_demo_runs_twice(run: Cli) -> None:
    seen = []
    for _ in range(2):
        tour = run("demo", json_output=True).json()
        seen.append(_assert_demo_tour("\n".join(tour["steps"])))
        assert {t["slug"] for t in tour["tenants"]} == {"demo-acme", "demo-globex"}
    first, second = seen
    # Two saves per run; same workflow source, same revision; one more tour, a newer fence.
    assert second["version"] == first["version"] + 2
    assert second["revision"] == first["revision"]
    assert second["tour"] == first["tour"] + 1
    assert second["fence"] > first["fence"]
    third = run("demo")
    assert third.code == 0, third.err
    assert _assert_demo_tour(third.out)["tour"] == second["tour"] + 1
    assert "demo-acme" in third.out


def _pg_urls(pg_db: Database) -> list[str]:
    return [
        "--database-url",
        pg_db.settings.database_url,
        "--owner-url",
        str(pg_db.settings.owner_database_url),
    ]


def test_demo_lease_on_redis(pg_db: Database, redis_url: str, invoke: Cli) -> None:
    """On PostgreSQL with a Redis URL the lease step runs on Redis, fenced write included."""
    done = invoke(*_pg_urls(pg_db), "--redis-url", redis_url, "demo")
    assert done.code == 0, done.err
    assert "demo-acme: acquired lease 'demo-tour' (redis lease backend): fence " in done.out
    _assert_demo_tour(done.out)


def test_demo_skips_the_lease_when_redis_is_down(pg_db: Database, invoke: Cli) -> None:
    """An unreachable Redis costs the lease step only, with a line saying so."""
    done = invoke(*_pg_urls(pg_db), "--redis-url", "redis://127.0.0.1:1/0", "demo")
    assert done.code == 0, done.err
    assert "demo-acme: skipped the lease step (redis lease backend, Redis unreachable?)" in (
        done.out
    )
    assert "demo-globex: cannot see demo-acme's run 'tour-" in done.out
    assert "UNEXPECTED" not in done.out


@pytest.fixture
def new_role(postgres: PostgresTarget) -> Iterator[str]:
    role = f"ptest_app_{uuid.uuid4().hex[:8]}"
    yield role
    with psycopg.connect(postgres.psycopg_url("admin"), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"' if _role_exists(conn, role) else "SELECT 1")
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return row is not None


def test_create_runtime_role(
    postgres: PostgresTarget,
    new_role: str,
    invoke: Cli,
    monkeypatch: pytest.MonkeyPatch,
    make_tenant_pg: Callable[[], str],
) -> None:
    def cli(*args: str) -> Result:
        return invoke("--database-url", postgres.owner_url, *args)

    secret = "s3cr3t-'quoted'"
    monkeypatch.setenv("APP_DB_PASSWORD", secret)
    setup = ("db", "create-runtime-role", new_role, "--password-env", "APP_DB_PASSWORD")
    printed = cli(*setup, "--print-sql")
    assert printed.code == 0 and "CREATE ROLE" in printed.out and "GRANT" in printed.out
    assert secret not in printed.out + printed.err and "PASSWORD '***'" in printed.out
    with psycopg.connect(postgres.psycopg_url("admin")) as conn:
        assert not _role_exists(conn, new_role), "--print-sql must not run anything"

    for _ in range(2):  # idempotent
        made = cli("--json", *setup)
        report = made.json()
        assert report["executed"] is True and secret not in made.out + made.err
    with psycopg.connect(postgres.psycopg_url("admin")) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (new_role,),
        ).fetchone()
    assert flags == (False, False, True)

    tenant = make_tenant_pg()
    role_url = make_url(postgres.runtime_url).set(username=new_role, password=secret)
    role_db = Database.from_url(role_url.render_as_string(False))
    with role_db, role_db.unit_of_work(tenant=tenant) as uow:
        assert uow.tenant.slug == tenant

    missing = cli("db", "create-runtime-role", new_role, "--password-env", "NOT_SET_ANYWHERE")
    assert "NOT_SET_ANYWHERE" in missing.one_line_error()
    assert "invalid role name" in cli("db", "create-runtime-role", "bad;role").one_line_error()


@pytest.fixture
def make_tenant_pg(pg_db: Database) -> Callable[[], str]:
    def make() -> str:
        slug = unique_slug()
        with pg_db.admin() as admin:
            admin.tenants.create(slug)
        return slug

    return make


def test_runtime_role_setup_refused_on_sqlite(invoke: Cli, sqlite_db: Database) -> None:
    url = ["--database-url", sqlite_db.settings.database_url]
    error = invoke(*url, "db", "create-runtime-role", "app").one_line_error()
    assert "only on PostgreSQL" in error


def test_passwords_in_urls_are_never_printed(invoke: Cli, postgres: PostgresTarget) -> None:
    # Trust authentication ignores the password, so the URL works and is printed masked.
    with_password = make_url(postgres.owner_url).set(password="hunter2-secret")
    shown = invoke("--database-url", with_password.render_as_string(False), "db", "current")
    assert shown.code == 0 and "hunter2" not in shown.out and "***" in shown.out
    down = "postgresql://app:hunter2-secret@127.0.0.1:1/nowhere"
    error = invoke("--database-url", down, "tenant", "list").one_line_error()
    assert "hunter2" not in error
    bad = invoke("--database-url", "mysql://u:hunter2-secret@h/db", "tenant", "list")
    assert "unsupported database" in bad.one_line_error() and "hunter2" not in bad.err


def subprocess_cli(
    command: list[str], env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """No PERSISTENCE_* variables, and a fresh HOME so the default SQLite file is new."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTENCE_")}
    env["HOME"] = str(tmp_path / "home")
    return env


def test_console_script_demo_on_the_default_sqlite_file(clean_env: dict[str, str]) -> None:
    assert CONSOLE_SCRIPT.exists()
    for tour in (1, 2):
        done = subprocess_cli([str(CONSOLE_SCRIPT)], clean_env, "demo")
        assert done.returncode == 0, done.stderr
        assert "cannot see the other tenant" in done.stdout
        assert "cannot load the other tenant's state" in done.stdout
        numbers = _assert_demo_tour(done.stdout)
        assert numbers["tour"] == numbers["run"] == tour  # a fresh HOME: tours 1 and 2
        assert numbers["version"] == 2 * tour and numbers["revision"] == 1
    default = Path(clean_env["HOME"]) / ".local/share/persistence/persistence.sqlite3"
    assert default.exists()
    assert f"database sqlite:///{default}" in done.stdout


def test_python_m_and_the_environment_variable(clean_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "env.sqlite3"
    env = {**clean_env, "PERSISTENCE_DATABASE_URL": f"sqlite:///{path}"}
    module = [sys.executable, "-m", "persistence"]
    with Database.from_url(f"sqlite:///{path}") as db:
        db.migrate()  # in-process: each subprocess costs seconds on a loaded machine
    slug = unique_slug()
    made = subprocess_cli(module, env, "--json", "tenant", "create", slug)
    assert made.returncode == 0 and json.loads(made.stdout)["slug"] == slug
    with Database.from_url(f"sqlite:///{path}") as db, db.admin() as admin:
        assert admin.tenants.get(slug).slug == slug
    failed = subprocess_cli(module, env, "tenant", "create", slug)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines() == [f"error: tenant {slug!r} already exists"]
    # Deleting without --yes, with no one to confirm on stdin, is refused.
    refused = subprocess_cli(module, env, "tenant", "delete", slug)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == ["error: aborted"]
    with Database.from_url(f"sqlite:///{path}") as db, db.admin() as admin:
        assert admin.tenants.get(slug).slug == slug


def test_a_bare_command_prints_its_help(invoke: Cli) -> None:
    for args in ([], ["tenant"], ["db"]):
        shown = invoke(*args)
        assert shown.code == 0 and shown.out.startswith("Usage: persistence") and not shown.err
    assert "create-runtime-role" in invoke("db", "--help").out
