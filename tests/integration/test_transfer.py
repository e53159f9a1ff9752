"""Export, import and diff: lossless across backends, all or nothing, no path escapes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from persistence import Database
from persistence.cli import cli
from persistence.errors import ConflictError, NotFoundError
from persistence.transfer import TransferError, diff_scope, export_scope, import_scope
from tests.conftest import unique_slug
from tests.fixtures.bridge import open_like

V1 = "def run(x):\n    return x\n"
V2 = "import asyncio\r\n\r\nasync def run(x):\r\n    return x  # é\r\n"


def new_tenant(db: Database) -> str:
    slug = unique_slug()
    with db.admin() as admin:
        admin.tenants.create(slug)
    return slug


def fill(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("hello", V1, "Say hello", tags=("demo", "greeting"))
        uow.workflows.save("hello", V2, description="Say hello, async")
        uow.workflows.create("échange", V1)
        uow.artifacts.save("reports", b"\x00\x01binary\xff")
        uow.artifacts.save(
            "reports/2026/q1.json", {"total": 1.5, "rows": [1, None]}, metadata={"owner": "ana"}
        )
        uow.artifacts.save("notes/readme.txt", "héllo\n", content_type="text/markdown")
        uow.artifacts.save("odd/..dots/@at%pct ", "x")
        uow.artifacts.save("long/" + "s" * 300, b"long segment")
        uow.states.save("agent/1", {"step": 1}, tags=["a"], metadata={"m": 1})
        uow.states.save("agent/1", {"step": 2, "big": list(range(500))})
        uow.states.save("..", ["dots"])


def snapshot(db: Database, tenant: str) -> dict[str, object]:
    """Every workflow revision, artifact byte and state version with its checksum."""
    out: dict[str, object] = {}
    with db.unit_of_work(tenant) as uow:
        for wf in uow.workflows.list().items:
            for rev in uow.workflows.revisions(wf.name):
                out[f"wf:{rev.name}@{rev.revision}"] = rev.model_dump()
        for art in uow.artifacts.list().items:
            out[f"art:{art.name}"] = (art.model_dump(), uow.artifacts.load_raw(art.name))
        for state in uow.states.list().items:
            for ver in uow.states.list_versions(state.state_id).items:
                loaded = uow.states.load(ver.state_id, ver.version)
                assert loaded is not None
                out[f"state:{ver.state_id}@{ver.version}"] = (ver.model_dump(), loaded.state)
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_sqlite_to_postgres_is_lossless(
    db_sqlite: Database, db_pg: Database, tmp_path: Path
) -> None:
    """Each API to each: an export of one reads back through the other the same."""
    source, target = new_tenant(db_sqlite), new_tenant(db_pg)
    fill(db_sqlite, source)
    export_scope(db_sqlite, source, "default", tmp_path / "a")
    report = import_scope(db_pg, target, "default", tmp_path / "a")
    assert report.written == {"workflows": 3, "artifacts": 5, "states": 3, "stores": 0, "runs": 0}
    assert diff_scope(db_pg, target, "default", tmp_path / "a") == []
    before, after = snapshot(db_sqlite, source), snapshot(db_pg, target)
    assert len(before) == 11 and before == after  # checksums, bytes, times, tags, metadata
    # Exporting the copy gives the same files byte for byte (stable, no export time).
    export_scope(db_pg, target, "default", tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    again = import_scope(db_pg, target, "default", tmp_path / "a")
    assert not again.changed and again.objects == report.objects


def test_layout_is_reviewable(db_sqlite: Database, tmp_path: Path) -> None:
    tenant = new_tenant(db_sqlite)
    fill(db_sqlite, tenant)
    export_scope(db_sqlite, tenant, "default", tmp_path)
    files = tree(tmp_path)
    assert files["workflows/hello/000002.py"] == V2.encode()
    assert json.loads(files["workflows/hello/000001.json"])["tags"] == ["demo", "greeting"]
    assert files["artifacts/reports/2026/q1.json@data"] == b'{"total":1.5,"rows":[1,null]}'
    assert files["artifacts/notes/readme.txt@data"] == "héllo\n".encode()
    assert "artifacts/odd/..dots/%40at%25pct%20@data" in files
    assert "states/agent%2F1/000002.meta.json" in files and "states/%2E%2E/000001.json" in files
    # Re-exporting replaces the earlier export (stale files go), keeps foreign entries.
    (tmp_path / ".git").mkdir()
    with db_sqlite.unit_of_work(tenant) as uow:
        uow.artifacts.delete("reports")
    export_scope(db_sqlite, tenant, "default", tmp_path)
    assert "artifacts/reports@data" not in tree(tmp_path) and (tmp_path / ".git").is_dir()


def _export(db: Database, tmp_path: Path) -> Path:
    tenant = new_tenant(db)
    fill(db, tenant)
    export_scope(db, tenant, "default", tmp_path / "export")
    return tmp_path / "export"


def _assert_empty(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        assert uow.workflows.list().items == []
        assert uow.artifacts.list().items == []
        assert uow.states.list().items == []


def _bad_source(root: Path) -> str:
    path = root / "workflows/hello/000002.py"
    bad = "def run(:\n"
    path.write_text(bad)
    meta = json.loads((root / "workflows/hello/000002.json").read_text())
    import hashlib

    meta["checksum"] = hashlib.sha256(bad.encode()).hexdigest()
    (root / "workflows/hello/000002.json").write_text(json.dumps(meta))
    return "workflows/hello/000002.py: workflow source: line 1"


def _bad_name(root: Path) -> str:
    (root / "workflows/hello").rename(root / "workflows/not-an-identifier")
    return "workflows/not-an-identifier/000001.py"


def _corrupt(root: Path) -> str:
    (root / "artifacts/reports@data").write_bytes(b"tampered")
    return "artifacts/reports@data: data does not match"


def _bad_json(root: Path) -> str:
    (root / "states/agent%2F1/000001.meta.json").write_text("{not json")
    return "states/agent%2F1/000001.meta.json: is not valid JSON"


def _stray(root: Path) -> str:
    (root / "workflows/hello/notes.txt").write_text("?")
    return "workflows/hello/notes.txt: unexpected file"


@pytest.mark.parametrize("damage", [_bad_source, _bad_name, _corrupt, _bad_json, _stray])
def test_one_invalid_object_writes_nothing(
    db: Database, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    root = _export(db, tmp_path)
    expected = damage(root)
    target = new_tenant(db)
    with pytest.raises(TransferError) as caught:
        import_scope(db, target, "default", root)
    assert expected in str(caught.value)
    _assert_empty(db, target)
    with pytest.raises(TransferError):
        diff_scope(db, target, "default", root)


def test_conflict_rolls_back_every_section(db: Database, tmp_path: Path) -> None:
    root = _export(db, tmp_path)
    target = new_tenant(db)
    with db.unit_of_work(target) as uow:
        uow.states.save("..", ["a different first version"])
    with pytest.raises(ConflictError):
        import_scope(db, target, "default", root)
    with db.unit_of_work(target) as uow:
        assert uow.workflows.list().items == [] and uow.artifacts.list().items == []
    with pytest.raises(NotFoundError):
        import_scope(db, target, "no-such-workspace", root)


def test_dry_run_writes_nothing(db: Database, tmp_path: Path) -> None:
    root = _export(db, tmp_path)
    target = new_tenant(db)
    report = import_scope(db, target, "default", root, dry_run=True)
    assert report.dry_run and report.written["workflows"] == 3
    _assert_empty(db, target)


def test_symlinks_and_escaping_names_are_refused(db: Database, tmp_path: Path) -> None:
    root = _export(db, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"do not read")
    target = new_tenant(db)

    link = root / "artifacts/leak@data"
    os.symlink(secret, link)
    with pytest.raises(TransferError, match="artifacts/leak@data: is a symlink"):
        import_scope(db, target, "default", root)
    link.unlink()

    os.symlink(outside, root / "artifacts/linked-dir")
    with pytest.raises(TransferError, match="artifacts/linked-dir: is a symlink"):
        import_scope(db, target, "default", root)
    (root / "artifacts/linked-dir").unlink()

    # A metadata file naming "../.." is refused by name validation, naming the file.
    meta = json.loads((root / "artifacts/reports@meta.json").read_text())
    meta["name"] = "../../outside/secret"
    (root / "artifacts/reports@meta.json").write_text(json.dumps(meta))
    with pytest.raises(TransferError, match=r"artifacts/reports@meta.json: .*segment"):
        import_scope(db, target, "default", root)
    _assert_empty(db, target)

    # Export never writes through a symlink planted in the destination.
    os.symlink(outside, root / "states-link")
    (root / "artifacts").rename(root / "moved")
    os.symlink(outside, root / "artifacts")
    source = new_tenant(db)
    fill(db, source)
    with pytest.raises(TransferError, match="symlink"):
        export_scope(db, source, "default", root)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    with pytest.raises(TransferError, match="not empty"):
        export_scope(db, source, "default", outside)
    assert secret.read_bytes() == b"do not read"


def test_diff_reports_each_kind_and_cli_exit_codes(db: Database, tmp_path: Path) -> None:
    root = _export(db, tmp_path)
    target = new_tenant(db)
    url = db.settings.database_url
    owner = db.settings.owner_database_url or url
    runner = CliRunner()
    base = ["--database-url", url, "--owner-url", owner]
    result = runner.invoke(cli, [*base, "import", "-t", target, str(root), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, [*base, "diff", "-t", target, str(root)]).exit_code == 1
    assert runner.invoke(cli, [*base, "import", "-t", target, str(root)]).exit_code == 0
    assert runner.invoke(cli, [*base, "diff", "-t", target, str(root)]).exit_code == 0
    with db.unit_of_work(target) as uow:
        uow.artifacts.save("reports", b"changed")
        uow.artifacts.save("new-in-db", b"x")
        uow.workflows.save("hello", V1)
    result = runner.invoke(cli, [*base, "--json", "diff", "-t", target, str(root)])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {"status": "only_in_database", "section": "workflows", "key": "hello@3"},
        {"status": "only_in_database", "section": "artifacts", "key": "new-in-db"},
        {"status": "different", "section": "artifacts", "key": "reports"},
    ]
    out = tmp_path / "cli-export"
    assert runner.invoke(cli, [*base, "export", "-t", target, str(out)]).exit_code == 0
    assert (out / "workflows/hello/000003.py").read_text() == V1


def test_limits_of_the_target_database_name_the_file(db_sqlite: Database, tmp_path: Path) -> None:
    root = _export(db_sqlite, tmp_path)
    strict = open_like(db_sqlite, max_artifact_bytes=10)
    target = new_tenant(db_sqlite)
    with pytest.raises(TransferError, match=r"^artifacts/\S+@data: .*over the limit"):
        import_scope(strict, target, "default", root)
    strict.close()
    _assert_empty(db_sqlite, target)
