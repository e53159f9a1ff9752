"""uow.states on both backends: round trips, codecs, integrity, retention, TTL, tags, input."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Uuid, bindparam, text

from persistence import Database
from persistence.codecs import checksum, dump_json
from persistence.errors import (
    AlreadyExistsError,
    ConflictError,
    DataCorruptionError,
    InvalidInputError,
    NotFoundError,
    VersionConflictError,
)
from persistence.settings import Settings
from tests.fixtures.bridge import open_like

MiB = 1024 * 1024


def nested_value(target_bytes: int, seed: int = 7) -> Any:
    """A nested JSON document of roughly ``target_bytes`` with every JSON type."""
    rng = random.Random(seed)
    items: list[Any] = []
    meta = {"ünï": "códe ✓ 🎉", "big": 2**63 - 1, "neg": -(2**63), "f": 0.1}
    value = {"meta": meta, "items": items}
    size = 0
    while size < target_bytes:
        n = rng.randint(0, 10**6)
        item = {
            "id": n,
            "ratio": n / 7,
            "flag": n % 2 == 0,
            "none": None,
            "text": "x" * rng.randint(0, 200),
            "nested": {"z": [1, 2.5, "three", [False, {"k": -n}]], "a": {}},
        }
        items.append(item)
        size += len(orjson.dumps(item))
    return value


def same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def raw_sql(db: Database, sql: str, **params: Any) -> Any:
    """Run SQL as the table owner, outside the library (bypassing the repository)."""
    statement = text(sql).bindparams(
        *(bindparam(k, type_=Uuid()) for k, v in params.items() if isinstance(v, uuid.UUID))
    )
    with db.owner_engine.begin() as conn:
        result = conn.execute(statement, params)
        return result.all() if result.returns_rows else result.rowcount


# -- acceptance 1: round trips ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1024, 64 * 1024, 5 * MiB])
def test_round_trip_nested_json(db: Database, tenant: str, size: int) -> None:
    value: Any = {} if size == 0 else nested_value(size)
    if size == 1:
        value = [None, True, 0, -1.5e300, "", {"": []}]
    with db.unit_of_work(tenant) as uow:
        meta = uow.states.save("doc", value)
    with db.unit_of_work(tenant) as uow:
        loaded = uow.states.load("doc")
    assert loaded is not None
    state, got = loaded
    assert state == value and same_types(state, value)
    assert got == meta and got.version == 1 and got.parent_version is None
    assert got.raw_size >= size


@pytest.mark.parametrize("value", ["", "ünï", 0, 2**63 - 1, 1.0, -0.5, True, False, None, []])
def test_scalar_states_keep_type(db: Database, tenant: str, value: Any) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("s", value)
        state, _ = uow.states.load("s")  # type: ignore[misc]
    assert state == value and type(state) is type(value)


@pytest.mark.parametrize("codec", ["none", "zlib", "lz4", "zstd"])
def test_every_codec_round_trips(db: Database, tenant: str, codec: str) -> None:
    value = nested_value(50_000)
    with db.unit_of_work(tenant) as uow:
        meta = uow.states.save("c", value, compression=codec)
        small = uow.states.save("tiny", {"a": 1}, compression=codec)
    assert meta.codec == codec and meta.raw_size > 1024
    if codec != "none":
        assert meta.stored_size < meta.raw_size
    assert small.codec == "none"  # under compression_threshold nothing is compressed
    with db.unit_of_work(tenant) as uow:
        assert uow.states.load("c").state == value  # type: ignore[union-attr]


def test_old_versions_load_after_default_codec_changes(db: Database, tenant: str) -> None:
    value = nested_value(20_000)
    codecs = ["zlib", "lz4", "zstd", "none"]
    for codec in codecs:
        other = open_like(db, compression=codec)
        try:
            with other.unit_of_work(tenant) as uow:
                assert uow.states.save("evolving", value).codec == codec
        finally:
            other.close()
    with db.unit_of_work(tenant) as uow:
        for version, codec in enumerate(codecs, start=1):
            state, meta = uow.states.load("evolving", version)  # type: ignore[misc]
            assert meta.codec == codec and state == value


# -- versions, optimistic concurrency, history --------------------------------------------


def test_versions_parents_and_expected_version(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        states = uow.states
        assert states.save("s", {"n": 1}, expected_version=0).version == 1
        with pytest.raises(VersionConflictError) as err:
            states.save("s", {"n": 2}, expected_version=0)
        assert (err.value.expected, err.value.actual) == (0, 1)
        assert "0" in str(err.value) and "1" in str(err.value)
        second = states.save("s", {"n": 2}, expected_version=1)
        assert (second.version, second.parent_version) == (2, 1)
        with pytest.raises(VersionConflictError) as err:
            states.save("s", {"n": 3}, expected_version=1)
        assert (err.value.expected, err.value.actual) == (1, 2)
        with pytest.raises(VersionConflictError):
            states.save("missing", {}, expected_version=3)
        assert states.load("missing") is None
        assert [m.version for m in states.list_versions("s").items] == [2, 1]


def test_history_pages_newest_first(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for n in range(7):
            uow.states.save("h", n)
        seen: list[int] = []
        cursor = None
        while True:
            page = uow.states.list_versions("h", limit=3, cursor=cursor)
            seen += [m.version for m in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_delete_version_delete_and_numbers_never_reused(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        for n in range(3):
            s.save("d", n)
        s.delete_version("d", 3)
        state, meta = s.load("d")  # type: ignore[misc]
        assert (state, meta.version) == (1, 2)
        assert s.save("d", "next").version == 4
        with pytest.raises(NotFoundError):
            s.delete_version("d", 3)
        s.delete("d")
        assert s.load("d") is None and s.list_versions("d").items == []
        with pytest.raises(NotFoundError):
            s.delete("d")
        again = s.save("d", "again", expected_version=0)
        assert (again.version, again.parent_version) == (5, None)
        assert [m.version for m in s.list_versions("d").items] == [5]


def test_rollback_writes_new_version_keeping_history(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        s.save("r", {"step": 1}, tags=["a"], metadata={"who": "first"})
        s.save("r", {"step": 2}, tags=["b"])
        meta = s.rollback("r", 1)
        assert (meta.version, meta.parent_version, meta.tags) == (3, 2, ("a",))
        state, latest = s.load("r")  # type: ignore[misc]
        assert state == {"step": 1} and latest.metadata == {"who": "first"}
        assert [m.version for m in s.list_versions("r").items] == [3, 2, 1]
        with pytest.raises(NotFoundError):
            s.rollback("r", 9)
        with pytest.raises(VersionConflictError):
            s.rollback("r", 1, expected_version=2)


def test_checkpoints_survive_pruning_and_restore(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        s.save("c", {"v": 1}, tags=["t"])
        cp = s.create_checkpoint("c", "before-risky-step", metadata={"why": "test"})
        assert (cp.version, cp.name, cp.metadata) == (1, "before-risky-step", {"why": "test"})
        with pytest.raises(AlreadyExistsError):
            s.create_checkpoint("c", "before-risky-step")
        for n in range(2, 6):
            s.save("c", {"v": n}, max_versions=2)
        assert [m.version for m in s.list_versions("c").items] == [5, 4]
        restored = s.restore_checkpoint(cp.id)
        assert (restored.version, restored.parent_version) == (6, 5)
        assert s.load("c").state == {"v": 1}  # type: ignore[union-attr]
        assert [c.name for c in s.list_checkpoints("c")] == ["before-risky-step"]
        with pytest.raises(NotFoundError):
            s.create_checkpoint("c", "old", version=1)
        with pytest.raises(NotFoundError):
            s.create_checkpoint("nope", "x")
        s.delete_checkpoint(cp.id)
        assert s.list_checkpoints("c") == []
        with pytest.raises(NotFoundError):
            s.restore_checkpoint(cp.id)


# -- acceptance 3: tampering ------------------------------------------------------------


def test_tampered_payload_or_checksum_raises(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("p", {"secret": "original"})
        uow.states.save("k", {"n": 1})
        uow.states.save("z", nested_value(5000), compression="zlib")
        tenant_id = uow.tenant.id
    raw_sql(
        db,
        "UPDATE state_versions SET payload = :p WHERE tenant_id = :t AND state_id = 'p'",
        p=b'{"secret":"altered!"}',
        t=tenant_id,
    )
    raw_sql(
        db,
        "UPDATE state_versions SET checksum = :c WHERE tenant_id = :t AND state_id = 'k'",
        c="0" * 64,
        t=tenant_id,
    )
    raw_sql(
        db,
        "UPDATE state_versions SET payload = :p WHERE tenant_id = :t AND state_id = 'z'",
        p=b"not zlib at all",
        t=tenant_id,
    )
    with db.unit_of_work(tenant) as uow:
        for sid in ("p", "k", "z"):
            with pytest.raises(DataCorruptionError, match=f"state '{sid}' version 1"):
                uow.states.load(sid)
        with pytest.raises(DataCorruptionError):
            uow.states.rollback("p", 1)


# -- acceptance 4: retention and expiry ---------------------------------------------------


def test_max_versions_keeps_exactly_the_newest(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for n in range(1, 8):
            uow.states.save("m", n, max_versions=3, tags=["x"])
        assert [m.version for m in uow.states.list_versions("m").items] == [7, 6, 5]
        assert uow.states.load("m", 4) is None
    with db.unit_of_work(tenant) as uow:
        assert uow.states.save("m", 8, max_versions=3).version == 8
        assert [m.version for m in uow.states.list_versions("m").items] == [8, 7, 6]
        tenant_id = uow.tenant.id
    rows = raw_sql(
        db, "SELECT count(*) FROM state_tags WHERE tenant_id = :t AND state_id = 'm'", t=tenant_id
    )
    assert rows[0][0] == 2  # tags of pruned versions went with them


def test_settings_default_max_versions(db: Database, tenant: str) -> None:
    limited = open_like(db, max_versions=2)
    try:
        with limited.unit_of_work(tenant) as uow:
            for n in range(5):
                uow.states.save("lim", n)
            assert [m.version for m in uow.states.list_versions("lim").items] == [5, 4]
    finally:
        limited.close()


def test_ttl_expiry_hides_then_purge_removes(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        s.save("short", {"a": 1}, tags=["ttl"], ttl=0.2)
        s.save("short", {"a": 2}, tags=["ttl"], ttl=timedelta(milliseconds=200))
        s.create_checkpoint("short", "cp")
        s.save("long", {"b": 1}, tags=["ttl"], ttl=3600)
        s.save("old-then-new", 1, ttl=0.2)
        s.save("old-then-new", 2)
        assert s.load("short") is not None
        tenant_id = uow.tenant.id
    time.sleep(0.3)
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        assert s.load("short") is None and s.load("short", 1) is None
        assert [m.state_id for m in s.list().items] == ["long", "old-then-new"]
        assert [m.state_id for m in s.search_by_tags(["ttl"]).items] == ["long"]
        assert s.list_versions("short").items == []
        assert [m.version for m in s.list_versions("old-then-new").items] == [2]
        assert s.stats().expired_states == 1
        assert s.purge_expired(batch_size=1) == 3  # two versions of "short", one of the other
        assert s.purge_expired() == 0
        assert s.stats().expired_states == 0
    for table in ("state_versions", "state_heads", "state_checkpoints", "state_tags"):
        rows = raw_sql(
            db,
            f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND state_id = 'short'",
            t=tenant_id,
        )
        assert rows[0][0] == 0, table
    with db.unit_of_work(tenant) as uow:
        assert uow.states.save("short", "reborn").version == 1


def test_saving_over_an_expired_state_starts_a_new_history(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("e", 1)
        uow.states.save("e", 2, ttl=0.1)
    time.sleep(0.2)
    with db.unit_of_work(tenant) as uow:
        meta = uow.states.save("e", 3, expected_version=0)
        assert (meta.version, meta.parent_version) == (3, None)
        assert [m.version for m in uow.states.list_versions("e").items] == [3]


def test_purge_in_bounded_batches(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for n in range(7):
            uow.states.save(f"b{n}", n, ttl=0.05)
    time.sleep(0.1)
    with db.unit_of_work(tenant) as uow:
        assert uow.states.purge_expired(batch_size=3, max_batches=1) == 3
        assert uow.states.purge_expired(batch_size=3) == 4
        assert uow.states.stats().expired_states == 0


# -- acceptance 5: tags ------------------------------------------------------------------


def test_search_by_tags_all_any_across_pages(db: Database, make_tenant: Callable[..., str]) -> None:
    tenant, other = make_tenant("research"), make_tenant()
    expected_all, expected_any = [], []
    with db.unit_of_work(tenant) as uow:
        for n in range(25):
            tags = ["red"] if n % 2 else ["red", "blue"]
            if n % 5 == 0:
                tags = ["green"]
            uow.states.save(f"s{n:02d}", n, tags=tags)
            if "red" in tags and "blue" in tags:
                expected_all.append(f"s{n:02d}")
            if "blue" in tags or "green" in tags:
                expected_any.append(f"s{n:02d}")
        # Only the latest version counts: s01 had "blue" before, not now.
        uow.states.save("s01", "new", tags=["red"])
        uow.states.save("zz", "old tags", tags=["red", "blue"])
        uow.states.save("zz", "new tags", tags=["plain"])
    for scope, workspace in ((other, "default"), (tenant, "research")):
        with db.unit_of_work(scope, workspace) as uow:
            uow.states.save("s02", "elsewhere", tags=["red", "blue", "green"])

    def collect(match: str, tags: list[str]) -> list[str]:
        found: list[str] = []
        cursor = None
        with db.unit_of_work(tenant) as uow:
            while True:
                page = uow.states.search_by_tags(tags, match, limit=4, cursor=cursor)  # type: ignore[arg-type]
                assert len(page.items) <= 4
                found += [m.state_id for m in page.items]
                if page.next_cursor is None:
                    return found
                cursor = page.next_cursor

    assert collect("all", ["red", "blue"]) == expected_all
    assert collect("any", ["blue", "green"]) == expected_any
    assert collect("all", ["red", "blue", "green"]) == []
    with db.unit_of_work(tenant) as uow:
        page = uow.states.search_by_tags(["green"], "any")
        assert all(m.tags == ("green",) for m in page.items)


def test_list_by_prefix_and_pages(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        for sid in ["agent/1", "agent/2", "agent/10", "Agent/3", "agentx", "b%", "b_"]:
            uow.states.save(sid, sid)
        assert [m.state_id for m in uow.states.list("agent/").items] == [
            "agent/1",
            "agent/10",
            "agent/2",
        ]
        assert [m.state_id for m in uow.states.list("b%").items] == ["b%"]
        first = uow.states.list(limit=4)
        rest = uow.states.list(limit=4, cursor=first.next_cursor)
        assert len(first.items) == 4 and len(rest.items) == 3 and rest.next_cursor is None
        with pytest.raises(InvalidInputError):
            uow.states.list(cursor="garbage")


# -- acceptance 6: bad input ----------------------------------------------------------------


class _Obj:
    pass


BAD_SAVES: list[tuple[str, dict[str, Any]]] = [
    ("object", {"state": {"a": _Obj()}}),
    ("set", {"state": {"a": {1, 2}}}),
    ("bytes", {"state": [b"raw"]}),
    ("tuple", {"state": {"a": (1, 2)}}),
    ("nan", {"state": {"deep": [1, {"x": float("nan")}]}}),
    ("inf", {"state": [float("inf")]}),
    ("-inf", {"state": {"a": float("-inf")}}),
    ("int key", {"state": {1: "a"}}),
    ("huge int", {"state": 2**64}),
    ("empty id", {"state_id": ""}),
    ("long id", {"state_id": "x" * 256}),
    ("non-str id", {"state_id": 5}),
    ("non-str tag", {"tags": ["ok", 3]}),
    ("str as tags", {"tags": "abc"}),
    ("empty tag", {"tags": [""]}),
    ("long tag", {"tags": ["t" * 101]}),
    ("negative ttl", {"ttl": -1}),
    ("zero ttl", {"ttl": 0}),
    ("negative timedelta", {"ttl": timedelta(seconds=-5)}),
    ("nan ttl", {"ttl": float("nan")}),
    ("bool ttl", {"ttl": True}),
    ("unknown codec", {"compression": "brotli"}),
    ("bad metadata", {"metadata": {"a": float("nan")}}),
    ("metadata not dict", {"metadata": ["x"]}),
    ("negative expected", {"expected_version": -1}),
    ("zero max_versions", {"max_versions": 0}),
    ("fence", {"fence": 3}),
]


@pytest.mark.parametrize("case", BAD_SAVES, ids=[c[0] for c in BAD_SAVES])
def test_bad_input_refused_and_nothing_written(
    db: Database, tenant: str, case: tuple[str, dict[str, Any]]
) -> None:
    kwargs: dict[str, Any] = {"state_id": "bad", "state": {"ok": True}}
    kwargs.update(case[1])
    with db.unit_of_work(tenant) as uow:
        with pytest.raises(InvalidInputError):
            uow.states.save(kwargs.pop("state_id"), kwargs.pop("state"), **kwargs)
        assert uow.states.list().items == []
        assert uow.states.stats().versions == 0


def test_state_above_size_limit_refused(db: Database, tenant: str) -> None:
    small = open_like(db, max_state_bytes=1000)
    try:
        with small.unit_of_work(tenant) as uow:
            uow.states.save("fits", "x" * 990)
            with pytest.raises(InvalidInputError, match="limit"):
                uow.states.save("big", "x" * 1000, compression="zstd")
            assert uow.states.load("big") is None
            assert [m.state_id for m in uow.states.list().items] == ["fits"]
    finally:
        small.close()


def test_bad_reads_refused(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        for call in (
            lambda: s.load(""),
            lambda: s.load("a", 0),
            lambda: s.list_versions("a", limit=0),
            lambda: s.search_by_tags([]),
            lambda: s.search_by_tags(["a"], "some"),  # type: ignore[arg-type]
            lambda: s.restore_checkpoint("not-a-uuid"),
            lambda: s.create_checkpoint("a", ""),
        ):
            with pytest.raises(InvalidInputError):
                call()


# -- export / import, stats ------------------------------------------------------------------


def test_export_import_round_trip(db: Database, make_tenant: Callable[..., str]) -> None:
    source, target = make_tenant(), make_tenant()
    with db.unit_of_work(source) as uow:
        for n in range(3):
            uow.states.save("a", {"n": n}, tags=["t"], metadata={"n": n}, compression="zstd")
        uow.states.save("b", "bee", ttl=3600)
        uow.states.delete_version("a", 2)
        exported = list(uow.states.iter_all_versions(batch_size=2))
    assert [(m.state_id, m.version) for _, m in exported] == [("a", 1), ("a", 3), ("b", 1)]
    with db.unit_of_work(target) as uow:
        assert all(uow.states.import_version(m, s) for s, m in exported)
        assert not any(uow.states.import_version(m, s) for s, m in exported)
        state, meta = uow.states.load("a")  # type: ignore[misc]
        assert (state, meta) == exported[1]
        assert uow.states.save("a", "next").version == 4
        changed = {"n": 0, "changed": True}
        raw = dump_json(changed)
        other = exported[0][1].model_copy(update={"checksum": checksum(raw), "raw_size": len(raw)})
        with pytest.raises(ConflictError):
            uow.states.import_version(other, changed)
        with pytest.raises(InvalidInputError):
            uow.states.import_version(exported[0][1].model_copy(update={"version": 2}), changed)
        assert [m.version for m in uow.states.list_versions("a").items] == [4, 3, 1]


def test_stats(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant) as uow:
        s = uow.states
        assert s.stats().versions == 0 and s.stats().compression_ratio is None
        for n in range(3):
            s.save("a", {"pad": "a" * 5000, "n": n}, compression="zlib")
        s.save("b", 1)
        s.create_checkpoint("b", "cp")
        stats = s.stats()
    assert (stats.states, stats.versions, stats.checkpoints) == (2, 4, 1)
    assert stats.max_versions_per_state == 3 and stats.versions_per_state == 2.0
    assert stats.raw_bytes > stats.stored_bytes and stats.compression_ratio > 5  # type: ignore[operator]


def test_rollback_of_a_unit_of_work_writes_nothing(db: Database, tenant: str) -> None:
    with pytest.raises(RuntimeError), db.unit_of_work(tenant) as uow:
        uow.states.save("tx", 1)
        raise RuntimeError("boom")
    with db.unit_of_work(tenant) as uow:
        assert uow.states.load("tx") is None
        assert uow.states.save("tx", 1).version == 1


def test_settings_codec_is_validated(db: Database) -> None:
    with pytest.raises(ValueError):
        Settings(compression="brotli")  # type: ignore[arg-type]


def test_fenced_save_with_bad_input_records_no_fence(db: Database, tenant: str) -> None:
    lease = db.lease(tenant=tenant, name="fenced-state", ttl=30)
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
        with pytest.raises(InvalidInputError):
            uow.states.save("f", {"ok": 1}, tags=[3], fence=lease)  # type: ignore[list-item]
        with pytest.raises(InvalidInputError):
            uow.states.save("f", {"ok": 1}, ttl=-1, fence=lease)
    assert raw_sql(db, "SELECT count(*) FROM fences WHERE tenant_id = :t", t=tenant_id) == [(0,)]
    with db.unit_of_work(tenant) as uow:
        assert uow.states.save("f", {"ok": 1}, fence=lease).version == 1
    assert raw_sql(db, "SELECT count(*) FROM fences WHERE tenant_id = :t", t=tenant_id) == [(1,)]
