"""``persistence state list|show|history|rollback|delete`` and ``persistence gc``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from persistence import Database
from persistence.cli import main
from persistence.cli.states import GC_STEPS, GcStep, register_gc_step

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(db: Database, capsys: pytest.CaptureFixture[str]) -> Run:
    urls = ["--database-url", db.settings.database_url]
    if db.settings.owner_database_url:
        urls += ["--owner-url", db.settings.owner_database_url]

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([*urls, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def _json(result: tuple[int, str, str]) -> Any:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def test_state_commands(db: Database, tenant: str, run: Run) -> None:
    with db.unit_of_work(tenant, "research") as uow:
        uow.states.save("agent/1", {"step": 1}, tags=["agent"])
        uow.states.save("agent/1", {"step": 2}, tags=["agent", "late"])
        uow.states.save("other", [1, 2])
    scope = ("--tenant", tenant, "--workspace", "research")

    listed = _json(run("--json", "state", "list", *scope))
    assert [m["state_id"] for m in listed["items"]] == ["agent/1", "other"]
    tagged = _json(run("--json", "state", "list", *scope, "--tag", "late"))
    assert [m["state_id"] for m in tagged["items"]] == ["agent/1"]
    code, out, _ = run("state", "list", *scope, "--prefix", "agent/")
    assert code == 0 and "agent/1" in out and "other" not in out

    shown = _json(run("--json", "state", "show", *scope, "agent/1", "--version", "1"))
    assert shown["state"] == {"step": 1} and shown["meta"]["version"] == 1
    history = _json(run("--json", "state", "history", *scope, "agent/1", "--limit", "1"))
    assert [m["version"] for m in history["items"]] == [2] and history["next_cursor"]

    rolled = _json(run("--json", "state", "rollback", *scope, "agent/1", "1"))
    assert (rolled["version"], rolled["parent_version"]) == (3, 2)
    assert _json(run("--json", "state", "show", *scope, "agent/1"))["state"] == {"step": 1}

    assert run("state", "delete", *scope, "agent/1", "--version", "2", "--yes")[0] == 0
    assert run("state", "delete", *scope, "other", "--yes")[0] == 0
    code, _, err = run("state", "show", *scope, "other")
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, _, err = run("state", "rollback", *scope, "agent/1", "2")
    assert code == 1 and "no version 2" in err and "Traceback" not in err
    code, _, err = run("state", "show", "--tenant", tenant, "")
    assert code == 1 and "state id" in err


def test_gc_purges_expired_states_of_every_workspace(
    db: Database, make_tenant: Callable[..., str], run: Run
) -> None:
    active, suspended = make_tenant("research"), make_tenant()
    for slug, workspace in ((active, "default"), (active, "research"), (suspended, "default")):
        with db.unit_of_work(slug, workspace) as uow:
            uow.states.save("short", 1, ttl=0.05)
            uow.states.save("kept", 1)
    with db.admin() as admin:
        admin.tenants.suspend(suspended)
    time.sleep(0.1)
    rows = _json(run("--json", "gc", "--batch-size", "1"))
    mine = {(r["tenant"], r["workspace"]): r for r in rows if r["step"] == "expired states"}
    assert mine[(active, "default")]["deleted"] == 1
    assert mine[(active, "research")]["deleted"] == 1
    assert mine[(suspended, "default")]["note"].startswith("skipped")
    with db.unit_of_work(active, "research") as uow:
        assert uow.states.stats().expired_states == 0 and uow.states.load("kept") is not None
    only = _json(run("--json", "gc", "--tenant", active))
    assert {r["tenant"] for r in only} == {active}
    assert run("gc", "--batch-size", "0")[0] != 0


def test_gc_steps_are_a_list_other_aggregates_extend() -> None:
    before = list(GC_STEPS)
    try:
        register_gc_step(GcStep("noop", lambda uow, size: 0))
        register_gc_step(GcStep("noop", lambda uow, size: 0))
        assert [s.name for s in GC_STEPS] == [*[s.name for s in before], "noop"]
    finally:
        GC_STEPS[:] = before
