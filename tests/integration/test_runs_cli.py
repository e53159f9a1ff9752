"""``persistence run list|show|history|purge`` on both backends, through ``main()``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from persistence import Database
from persistence.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(db: Database, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    urls = ["--database-url", db.settings.database_url]
    if db.settings.owner_database_url:
        urls += ["--owner-url", db.settings.owner_database_url]

    def call(*args: str) -> Result:
        capsys.readouterr()
        try:
            main([*urls, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def test_run_commands(db: Database, tenant: str, run_cli: Callable[..., Result]) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("wf", "def run():\n    return 1\n")
        done = uow.runs.start("wf", args={"n": 1}, run_id="done-1").id
        uow.runs.transition(done, "running", worker="w1")
        try:
            raise ValueError("bad input")
        except ValueError as exc:
            uow.runs.set_exception(done, exc)
        ok = uow.runs.start("wf", run_id="ok-1").id
        uow.runs.claim(worker="w2")
        uow.runs.set_result(ok, {"answer": 42})
        uow.runs.start("wf", run_id="waiting-1")
    scope = ("--tenant", tenant)

    listed = run_cli("--json", "run", "list", *scope)
    assert listed.code == 0, listed.err
    assert [r["id"] for r in json.loads(listed.out)["items"]] == ["waiting-1", "ok-1", "done-1"]
    table = run_cli("run", "list", *scope, "--status", "failed")
    assert table.code == 0 and "done-1" in table.out and "ok-1" not in table.out

    shown = json.loads(run_cli("--json", "run", "show", *scope, "ok-1").out)
    assert shown["result"] == {"answer": 42} and shown["status"] == "succeeded"
    failed = run_cli("run", "show", *scope, "done-1")
    assert "ValueError: bad input" in failed.out and "Traceback" in failed.out

    history = json.loads(run_cli("--json", "run", "history", *scope, "done-1").out)
    assert [h["status"] for h in history] == ["pending", "running", "failed"]

    purged = run_cli("--json", "run", "purge", *scope, "--older-than", "0s", "--yes")
    assert purged.code == 0 and json.loads(purged.out) == {"deleted": 2}
    left = json.loads(run_cli("--json", "run", "list", *scope).out)["items"]
    assert [r["id"] for r in left] == ["waiting-1"]


@pytest.mark.parametrize(
    "args",
    [
        ("run", "show", "missing"),
        ("run", "history", "missing"),
        ("run", "purge", "--older-than", "soon", "--yes"),
        ("run", "list", "--cursor", "garbage"),
    ],
)
def test_run_command_errors_are_one_line(
    tenant: str, run_cli: Callable[..., Result], args: tuple[str, ...]
) -> None:
    result = run_cli(*args[:2], "--tenant", tenant, *args[2:])
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
