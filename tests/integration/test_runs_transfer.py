"""The runs section of export / import / diff: lossless across backends, idempotent,
conflicts and invalid files refused before anything is written."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from persistence import Database
from persistence.errors import ConflictError
from persistence.transfer import TransferError, diff_scope, export_scope, import_scope
from tests.conftest import unique_slug

SOURCE = "def run(x=None):\n    return x\n"


def new_tenant(db: Database) -> str:
    slug = unique_slug()
    with db.admin() as admin:
        admin.tenants.create(slug)
    return slug


def fill(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("wf", SOURCE)
        parent = uow.runs.start("wf", args={"n": 1.5, "s": "é"}, run_id="p:1@x", tags=["a"])
        uow.runs.start("wf", args=None, run_id="child-1", parent_run_id=parent.id)
        uow.runs.transition(parent.id, "running", worker="w1", note="go")
        uow.runs.transition(parent.id, "retrying", retry_at=timedelta(1))
        uow.runs.transition(parent.id, "running", worker="w2")
        uow.runs.set_data(parent.id, "k", {"nested": [1, None]})
        uow.runs.deterministic(parent.id, "seed", lambda: 0.125)
        uow.runs.set_result(parent.id, None)
        failed = uow.runs.start("wf", run_id="f-1")
        uow.runs.transition(failed.id, "running")
        try:
            try:
                raise KeyError("inner")
            except KeyError as exc:
                raise RuntimeError("outer") from exc
        except RuntimeError as exc:
            uow.runs.set_exception(failed.id, exc)


def snapshot(db: Database, tenant: str) -> list[dict[str, object]]:
    with db.unit_of_work(tenant) as uow:
        return uow.runs.export_documents()


def test_runs_round_trip_across_backends(
    db_sqlite: Database, db_pg: Database, tmp_path: Path
) -> None:
    source, target = new_tenant(db_sqlite), new_tenant(db_pg)
    fill(db_sqlite, source)
    export_scope(db_sqlite, source, "default", tmp_path / "x")
    files = sorted(p.name for p in (tmp_path / "x" / "runs").iterdir())
    assert files == ["child-1.json", "f-1.json", "p%3A1%40x.json"]
    doc = json.loads((tmp_path / "x" / "runs" / "p%3A1%40x.json").read_text())
    assert [e["status"] for e in doc["history"]] == [
        "pending", "running", "retrying", "running", "succeeded"
    ]  # fmt: skip
    assert doc["result"] == {"value": None} and doc["deterministic"] == {"seed": 0.125}

    report = import_scope(db_pg, target, "default", tmp_path / "x")
    assert report.written["runs"] == 3
    assert snapshot(db_pg, target) == snapshot(db_sqlite, source)
    assert diff_scope(db_pg, target, "default", tmp_path / "x") == []
    again = import_scope(db_pg, target, "default", tmp_path / "x")
    assert again.written["runs"] == 0
    with db_pg.unit_of_work(target) as uow:
        exc = uow.runs.get_exception("f-1")
        assert exc is not None and "KeyError: 'inner'" in exc.traceback
        assert uow.runs.get_result("p:1@x") is None
        assert [r.id for r in uow.runs.children("p:1@x")] == ["child-1"]


def test_runs_diff_conflict_and_invalid_file(db: Database, tmp_path: Path) -> None:
    source, target = new_tenant(db), new_tenant(db)
    fill(db, source)
    export_scope(db, source, "default", tmp_path / "x")
    with db.unit_of_work(source) as uow:
        uow.runs.transition("child-1", "cancelled")
    diff = diff_scope(db, source, "default", tmp_path / "x")
    assert [(d.section, d.key, d.status) for d in diff] == [("runs", "child-1", "different")]
    with pytest.raises(ConflictError):
        import_scope(db, source, "default", tmp_path / "x")

    path = tmp_path / "x" / "runs" / "f-1.json"
    doc = json.loads(path.read_text())
    doc["history"][1]["seq"] = 7
    path.write_text(json.dumps(doc))
    with pytest.raises(TransferError, match=r"runs/f-1\.json"):
        import_scope(db, target, "default", tmp_path / "x")
    with db.unit_of_work(target) as uow:
        assert uow.runs.list().items == [] and uow.workflows.list().items == []
