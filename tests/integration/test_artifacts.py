"""Artifacts: kinds preserved, size limit, names, listing, scoping, corruption."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from persistence import Database
from persistence.errors import (
    ConflictError,
    DataCorruptionError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
)
from persistence.repositories.artifacts import ArtifactRepository
from tests.conftest import unique_slug
from tests.fixtures.bridge import class_of
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import recorded

MIB = 1024 * 1024


@pytest.fixture
def pg_tenant(db_pg: Database) -> str:
    slug = unique_slug()
    with db_pg.admin() as admin:
        admin.tenants.create(slug)
    return slug


def test_kinds_round_trip(db: Database, tenant: str) -> None:
    value = {"a": [1, 2.5, None, True, "é"], "nested": {"x": -(2**63)}}
    with db.unit_of_work(tenant) as uow:
        uow.artifacts.save("data/blob.bin", b"\x00\xffraw")
        uow.artifacts.save("notes/readme.txt", "héllo\r\n")
        uow.artifacts.save("reports/2026/q1.json", value, metadata={"owner": "ana"})
        uow.artifacts.save("numbers/seven", 7)
        uow.artifacts.save("text-that-looks-like-json", '{"a": 1}')
        uow.artifacts.save("empty/bytes", b"")
        uow.artifacts.save("empty/str", "")
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.load("data/blob.bin") == b"\x00\xffraw"
        assert uow.artifacts.load("notes/readme.txt") == "héllo\r\n"
        assert uow.artifacts.load("reports/2026/q1.json") == value
        assert uow.artifacts.load("numbers/seven") == 7
        assert uow.artifacts.load("text-that-looks-like-json") == '{"a": 1}'
        assert uow.artifacts.load("empty/bytes") == b"" and uow.artifacts.load("empty/str") == ""
        meta = uow.artifacts.get("reports/2026/q1.json")
        assert (meta.kind, meta.content_type, meta.metadata) == (
            "json",
            "application/json",
            {"owner": "ana"},
        )
        assert uow.artifacts.get("notes/readme.txt").size == len("héllo\r\n".encode())
        assert len(meta.checksum) == 64 and meta.created_at <= meta.updated_at


def test_replace_keeps_created_at_and_delete(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        first = uow.artifacts.save("x", b"one", content_type="image/png")
        second = uow.artifacts.save("x", "two")
        assert second.created_at == first.created_at and second.kind == "str"
        assert uow.artifacts.exists("x")
        uow.artifacts.delete("x")
        assert not uow.artifacts.exists("x")
        with pytest.raises(NotFoundError):
            uow.artifacts.delete("x")
        with pytest.raises(NotFoundError):
            uow.artifacts.load("x")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/abs",
        "a//b",
        "a/./b",
        "../up",
        "a/..",
        "back\\slash",
        "nul\x00",
        "tab\t",
        "x" * 513,
        "trailing/",
    ],
)
def test_bad_names_refused(db_sqlite: Database, name: str) -> None:
    slug = unique_slug()
    with db_sqlite.admin() as admin:
        admin.tenants.create(slug)
    with db_sqlite.unit_of_work(slug) as uow:
        with pytest.raises(InvalidInputError):
            uow.artifacts.save(name, b"x")
        assert uow.artifacts.list().items == []


def test_bad_values_refused_before_writing(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        with pytest.raises(InvalidInputError):
            uow.artifacts.save("nan", float("nan"))
        with pytest.raises(InvalidTypeError):
            uow.artifacts.save("set", {1, 2})
        with pytest.raises(InvalidTypeError):
            uow.artifacts.save("keys", {1: "x"})
        with pytest.raises(InvalidTypeError):
            uow.artifacts.save("meta", b"x", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            uow.artifacts.save("ctype", b"x", content_type="bad\ntype")
        with pytest.raises(InvalidInputError):
            uow.artifacts.save("surrogate", "\ud800")
        assert uow.artifacts.list().items == []


def test_50_mib_round_trip_and_65_mib_refused(db: Database, tenant: str) -> None:
    big = os.urandom(50 * MIB)
    with db.unit_of_work(tenant) as uow:
        uow.artifacts.save("big.bin", big)
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.load("big.bin") == big
        assert uow.artifacts.get("big.bin").size == 50 * MIB
        # Replacing a large artifact with a small one (and back) keeps both exact.
        uow.artifacts.save("big.bin", b"small")
        assert uow.artifacts.load("big.bin") == b"small"
        uow.artifacts.save("big.bin", big)
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.load_raw("big.bin") == big
    del big
    with db.unit_of_work(tenant) as uow:
        with pytest.raises(InvalidInputError, match="over the limit"):
            uow.artifacts.save("huge.bin", bytes(65 * MIB))
        with pytest.raises(InvalidInputError, match="over the limit"):
            uow.artifacts.save("huge.txt", "x" * (65 * MIB))
        assert not uow.artifacts.exists("huge.bin") and not uow.artifacts.exists("huge.txt")


def test_compression_and_limit_follow_settings(
    tmp_path: os.PathLike[str], open_database: Callable[..., Database]
) -> None:
    url = f"sqlite:///{tmp_path}/c.sqlite3"
    with open_database(url, compression="zstd", max_artifact_bytes=5000) as db:
        db.migrate()
        with db.admin() as admin:
            admin.tenants.create("acme")
        with db.unit_of_work("acme") as uow:
            record = uow.artifacts.save("z.txt", "a" * 2000)
            assert record.codec == "zstd" and record.stored_size < 100
            with pytest.raises(InvalidInputError):
                uow.artifacts.save("too-big", b"a" * 5001)
        with db.unit_of_work("acme") as uow:
            assert uow.artifacts.load("z.txt") == "a" * 2000


def test_list_prefix_pages_and_workspaces(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for name in ("r/b", "r/a", "R/c", "r2", "s/x"):
            uow.artifacts.save(name, name)
    with db.unit_of_work(tenant, "research") as uow:
        uow.artifacts.save("r/a", b"other workspace")
        assert [a.name for a in uow.artifacts.list().items] == ["r/a"]
    with db.unit_of_work(tenant) as uow:
        page = uow.artifacts.list("r", limit=2)
        assert [a.name for a in page.items] == ["r/a", "r/b"]
        rest = uow.artifacts.list("r", limit=2, cursor=page.next_cursor)
        assert [a.name for a in rest.items] == ["r2"] and rest.next_cursor is None
        assert [a.name for a in uow.artifacts.list("r/").items] == ["r/a", "r/b"]
        assert uow.artifacts.load("r/a") == "r/a"


def test_import_artifact_idempotent(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        record = uow.artifacts.save("a.json", {"k": 1}, metadata={"m": 1})
        raw = uow.artifacts.load_raw("a.json")
        moved = record.model_copy(update={"name": "b.json"})
        assert uow.artifacts.import_artifact(moved, raw) is True
        assert uow.artifacts.import_artifact(moved, raw) is False
        assert uow.artifacts.get("b.json") == moved
        with pytest.raises(ConflictError):
            uow.artifacts.import_artifact(moved.model_copy(update={"metadata": {}}), raw)
        with pytest.raises(InvalidInputError):
            uow.artifacts.import_artifact(moved.model_copy(update={"name": "c"}), b"tampered")


def test_corruption_detected(db_pg: Database, pg_tenant: str) -> None:
    with db_pg.unit_of_work(pg_tenant) as uow:
        uow.artifacts.save("victim", b"original")
    with db_pg.owner_engine.begin() as conn:
        conn.execute(
            text("UPDATE artifacts SET payload = :p WHERE name = 'victim'"), {"p": b"tampered"}
        )
    with db_pg.unit_of_work(pg_tenant) as uow, pytest.raises(DataCorruptionError):
        uow.artifacts.load("victim")


def test_rls_and_tenant_cascade(db_pg: Database, pg_tenant: str, postgres: PostgresTarget) -> None:
    with db_pg.unit_of_work(pg_tenant) as uow:
        uow.artifacts.save("secret.txt", "hidden")
    other = unique_slug()
    with db_pg.admin() as admin:
        admin.tenants.create(other)
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        assert conn.execute("SELECT count(*) FROM artifacts").fetchone() == (0,)
        # Raw SQL as the runtime role: another tenant's setting shows none of our rows.
        conn.execute("SELECT set_config('persistence.scope', %s, true)", (token(db_pg, other),))
        assert conn.execute("SELECT count(*) FROM artifacts").fetchone() == (0,)
        conn.execute("SELECT set_config('persistence.scope', %s, true)", (token(db_pg, pg_tenant),))
        assert conn.execute("SELECT count(*) FROM artifacts").fetchone() == (1,)
    with db_pg.admin() as admin:
        tenant_id = admin.tenants.get(pg_tenant).id
        admin.tenants.delete(pg_tenant)
    with db_pg.owner_engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM artifacts WHERE tenant_id = :t"), {"t": tenant_id}
        ).scalar_one()
        assert left == 0


def test_concurrent_saves_of_one_name(db: Database, tenant: str) -> None:
    import threading

    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with db.unit_of_work(tenant) as uow:
                uow.artifacts.save("contended", f"writer {i}" * 1000)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.load("contended") in {f"writer {i}" * 1000 for i in range(4)}
        assert len(uow.artifacts.list().items) == 1


# -- the PostgreSQL fast path: save and the first read of load on the driver -----------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 8 * MIB + 3])
def test_sizes_around_the_small_and_chunk_limits(db: Database, tenant: str, size: int) -> None:
    # Up to 64 KiB stored, PostgreSQL returns the payload with the first read; above,
    # it reads it in 8 MiB chunks (8 MiB + 3 is two of them).
    data = os.urandom(size)
    with db.unit_of_work(tenant) as uow:
        saved = uow.artifacts.save("sized.bin", data)
        assert uow.artifacts.load("sized.bin") == data
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.load("sized.bin") == data
        assert uow.artifacts.load_raw("sized.bin") == data
        assert uow.artifacts.get("sized.bin") == saved
        assert (saved.size, saved.stored_size, saved.codec) == (size, size, "none")


def test_save_returns_what_get_reads_and_savepoints_hold(db: Database, tenant: str) -> None:
    meta = {"owner": "ána", "n": 1.5e16, "tags": ["x", None]}
    with db.unit_of_work(tenant) as uow:
        first = uow.artifacts.save("rec.json", {"v": 1}, metadata=meta)
        assert uow.artifacts.get("rec.json") == first and first.metadata == meta
        assert first.created_at.tzinfo == UTC and first.updated_at == first.created_at
        try:
            with uow.savepoint():
                uow.artifacts.save("rec.json", "replaced", content_type="text/x-custom")
                assert uow.artifacts.load("rec.json") == "replaced"
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert uow.artifacts.load("rec.json") == {"v": 1}
        with uow.savepoint():
            second = uow.artifacts.save("rec.json", b"\x00bytes")
    with db.unit_of_work(tenant) as uow:
        assert uow.artifacts.get("rec.json") == second
        assert second.created_at == first.created_at and second.updated_at > first.updated_at
        assert (second.kind, second.content_type, second.metadata) == (
            "bytes",
            "application/octet-stream",
            {},
        )
        assert uow.artifacts.load("rec.json") == b"\x00bytes"
    with db.unit_of_work(tenant, "research") as uow, pytest.raises(NotFoundError):
        uow.artifacts.load("rec.json")


def test_compressed_artifacts_on_postgres(
    postgres: PostgresTarget, open_database: Callable[..., Database]
) -> None:
    with open_database(
        postgres.runtime_url, owner_url=postgres.owner_url, compression="zstd"
    ) as db:
        tenant = unique_slug()
        with db.admin() as admin:
            admin.tenants.create(tenant)
        noise = os.urandom(200 * 1024)  # does not compress: read in chunks
        with db.unit_of_work(tenant) as uow:
            text_record = uow.artifacts.save("a.txt", "a" * 200_000)
            noise_record = uow.artifacts.save("noise.bin", noise)
            uow.artifacts.save("small.json", {"k": [1, 2]})  # under the threshold
        assert text_record.codec == "zstd" and text_record.stored_size < 1000
        assert noise_record.codec == "zstd" and noise_record.stored_size > 64 * 1024
        with db.unit_of_work(tenant) as uow:
            assert uow.artifacts.load("a.txt") == "a" * 200_000
            assert uow.artifacts.load("noise.bin") == noise
            assert uow.artifacts.load("small.json") == {"k": [1, 2]}
            assert uow.artifacts.get("small.json").codec == "none"
            assert uow.artifacts.load_raw("a.txt") == b"a" * 200_000


def test_pg_save_and_load_run_one_statement_each_without_a_session(
    db_pg: Database, pg_tenant: str
) -> None:
    with db_pg.unit_of_work(pg_tenant) as uow, recorded(db_pg) as sent:
        uow.artifacts.save("fast.bin", b"fast")
        assert uow.artifacts.load("fast.bin") == b"fast"
        assert uow._require()._session is None  # the session was never built
    statements = [statement for statement, _ in sent]
    assert len(statements) == 2 and all("artifacts" in s for s in statements)


def _replacing_while_read(
    monkeypatch: pytest.MonkeyPatch, db: Database, writer: Database, tenant: str, times: int
) -> list[bytes]:
    """Make every chunked read of ``db``'s API (up to ``times``) first replace the
    artifact from another transaction (``writer``'s, committed); the payloads written."""
    repository = class_of(db, ArtifactRepository)
    original = repository._read_chunks
    written: list[bytes] = []

    def replacing(self: ArtifactRepository, *args: object) -> Any:
        if len(written) < times:
            written.append(os.urandom(100 * 1024))
            with writer.unit_of_work(tenant) as other:
                other.artifacts.save("moving.bin", written[-1])
        return original(self, *args)  # (on asyncio, the coroutine the caller awaits)

    monkeypatch.setattr(repository, "_read_chunks", replacing)
    return written


def test_load_starts_again_when_replaced_between_reads(
    db_pg: Database, pg_db: Database, pg_tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replacing writer is another client (the sync API's pool: on asyncio it runs
    # on the event loop's thread, where the bridge cannot be called).
    with db_pg.unit_of_work(pg_tenant) as uow:
        uow.artifacts.save("moving.bin", os.urandom(100 * 1024))
    written = _replacing_while_read(monkeypatch, db_pg, pg_db, pg_tenant, times=1)
    with db_pg.unit_of_work(pg_tenant) as uow:
        assert uow.artifacts.load("moving.bin") == written[0]
    written = _replacing_while_read(monkeypatch, db_pg, pg_db, pg_tenant, times=3)
    with db_pg.unit_of_work(pg_tenant) as uow, pytest.raises(ConflictError, match="kept"):
        uow.artifacts.load("moving.bin")
    assert len(written) == 3
