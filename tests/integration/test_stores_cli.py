"""``persistence store ...`` and ``persistence lease list`` on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from persistence import Database
from persistence.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def error(self) -> str:
        assert self.code != 0 and "Traceback" not in self.err, (self.out, self.err)
        [line] = self.err.strip().splitlines()
        return line


Cli = Callable[..., Result]


@pytest.fixture
def run(db: Database, capsys: pytest.CaptureFixture[str]) -> Cli:
    urls = ["--database-url", db.settings.database_url]
    if db.settings.owner_database_url:
        urls += ["--owner-url", db.settings.owner_database_url]

    def call(*args: str, json_output: bool = False) -> Result:
        capsys.readouterr()
        try:
            main([*urls, *(["--json"] if json_output else []), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def test_store_commands(run: Cli, db: Database, tenant: str) -> None:
    scope = ["--tenant", tenant, "--workspace", "research", "--store", "agent-1"]
    assert run("store", "set", *scope, "color", '"red"').code == 0
    assert run("store", "set", *scope, "shape", '{"r": 1.5, "tags": [1, null]}').code == 0
    assert run("store", "get", *scope, "color").out.strip() == '"red"'
    assert run("store", "get", *scope, "shape", json_output=True).json() == {
        "r": 1.5,
        "tags": [1, None],
    }
    listed = run("store", "list", *scope, json_output=True).json()
    assert listed == {"color": "red", "shape": {"r": 1.5, "tags": [1, None]}}
    table = run("store", "list", *scope).out.splitlines()
    assert table[0].split() == ["KEY", "VALUE"] and table[1].startswith("color")
    stores = run("store", "list", "--tenant", tenant, "--workspace", "research", json_output=True)
    assert [s["name"] for s in stores.json()] == ["agent-1"]

    assert "must be JSON" in run("store", "set", *scope, "color", "red").error()
    assert "NaN" in run("store", "set", *scope, "color", "NaN").error()
    assert "1025" in run("store", "set", *scope, "k" * 1025, "1").error()
    assert "not in store" in run("store", "get", *scope, "nope").error()
    assert db.store(tenant=tenant, workspace="research", name="agent-1")["color"] == "red"

    assert run("store", "delete", *scope, "color").code == 0
    assert "not in store" in run("store", "delete", *scope, "color").error()
    assert run("store", "delete", *scope, "--yes", json_output=True).json() == {
        "deleted": "store",
        "store": "agent-1",
    }
    assert "does not exist" in run("store", "delete", *scope, "--yes").error()
    assert run("store", "list", "--tenant", tenant, "--workspace", "research").out.strip() == (
        "(none)"
    )


def test_lease_list(run: Cli, db: Database, tenant: str) -> None:
    assert run("lease", "list", "--tenant", tenant, json_output=True).json() == []
    with db.lease(tenant=tenant, name="thread-42", ttl=60) as lease:
        [row] = run("lease", "list", "--tenant", tenant, json_output=True).json()
        assert (row["name"], row["holder"], row["fence"]) == ("thread-42", lease.token, lease.fence)
        assert 0 < row["remaining"] <= 60
        table = run("lease", "list", "--tenant", tenant).out.splitlines()
        assert table[0].split()[:3] == ["NAME", "HOLDER", "FENCE"]
    assert run("lease", "list", "--tenant", tenant).out.strip() == "(none)"
    assert "does not exist" in run("lease", "list", "--tenant", "nope-" + tenant).error()
