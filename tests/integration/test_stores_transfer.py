"""Stores in export / import / diff of a tenant scope."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from persistence import Database
from persistence.errors import ConflictError
from persistence.transfer import TransferError, diff_scope, export_scope, import_scope

VALUES = {
    "color": "red",
    "n": 1,
    "f": 1.0,
    "flag": True,
    "nested": {"b": [1, None, "日本"], "a": -0.5},
    "日本": "key outside ASCII",
}


def test_stores_round_trip(db: Database, make_tenant: Callable[..., str], tmp_path: Path) -> None:
    source, target = make_tenant(), make_tenant()
    db.store(tenant=source, name="agent-1").update(VALUES)
    with db.unit_of_work(source) as uow:
        uow.store("empty")["x"] = 1
        del uow.store("empty")["x"]
    export_scope(db, source, "default", tmp_path / "export")
    saved = json.loads((tmp_path / "export" / "stores" / "agent-1.json").read_text())
    assert saved == VALUES and list(saved) == sorted(VALUES)

    assert {(d.key, d.status) for d in diff_scope(db, target, "default", tmp_path / "export")} >= {
        ("agent-1", "only_in_directory"),
        ("agent-1/color", "only_in_directory"),
        ("empty", "only_in_directory"),
    }
    report = import_scope(db, target, "default", tmp_path / "export")
    assert report.written["stores"] == len(VALUES)
    copied = dict(db.store(tenant=target, name="agent-1"))
    assert copied == VALUES and type(copied["f"]) is float and type(copied["n"]) is int
    with db.unit_of_work(target) as uow:
        assert [s.name for s in uow.list_stores().items] == ["agent-1", "empty"]
    assert diff_scope(db, target, "default", tmp_path / "export") == []
    again = import_scope(db, target, "default", tmp_path / "export")
    assert again.written["stores"] == 0

    db.store(tenant=target, name="agent-1")["n"] = 1.0  # same number, another JSON type
    [entry] = diff_scope(db, target, "default", tmp_path / "export")
    assert (entry.section, entry.key, entry.status) == ("stores", "agent-1/n", "different")
    db.store(tenant=target, name="agent-1")["new"] = 1
    with pytest.raises(ConflictError, match="'n'"):
        import_scope(db, target, "default", tmp_path / "export")
    assert db.store(tenant=target, name="agent-1")["n"] == 1.0


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("Bad Name.json", "{}"),
        ("ok.json", "[1, 2]"),
        ("ok.json", '{"k": NaN}'),
        ("ok.json", '{"": 1}'),
        ("ok.txt", "{}"),
    ],
)
def test_bad_store_files_are_refused(
    db: Database, make_tenant: Callable[..., str], tmp_path: Path, file: str, content: str
) -> None:
    source, target = make_tenant(), make_tenant()
    db.store(tenant=source, name="good")["k"] = 1
    export_scope(db, source, "default", tmp_path / "export")
    (tmp_path / "export" / "stores" / file).write_text(content)
    with pytest.raises(TransferError, match=file.replace(".", r"\.")):
        import_scope(db, target, "default", tmp_path / "export")
    assert len(db.store(tenant=target, name="good")) == 0  # nothing written
