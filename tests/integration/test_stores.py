"""Key/value stores on both backends: the mapping API, transactions, validation, isolation."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import Uuid, bindparam, text

from persistence import Database
from persistence.errors import (
    DataCorruptionError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
    PersistenceError,
    StaleFenceError,
)
from tests.fixtures.bridge import open_like
from tests.fixtures.scopes import token
from tests.fixtures.services import PostgresTarget
from tests.fixtures.statements import events_of


def test_mapping_basics(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, workspace="research", name="agent-1")
    assert len(store) == 0 and dict(store) == {} and store.get("color") is None
    with pytest.raises(KeyError):
        store["color"]
    store["color"] = "red"
    store["shape"] = {"kind": "circle", "r": 1.5, "tags": ["a", None, True], "n": 2**63 - 1}
    assert store["color"] == "red" and "color" in store and "nope" not in store
    assert store["shape"] == {"kind": "circle", "r": 1.5, "tags": ["a", None, True], "n": 2**63 - 1}
    assert type(store["shape"]["r"]) is float
    store["one"] = 1.0
    assert type(store["one"]) is float  # 1.0 stays a float
    assert list(store) == ["color", "one", "shape"] == list(store.keys())
    assert list(store.values()) == ["red", 1.0, store["shape"]]
    assert store == {"color": "red", "one": 1.0, "shape": store["shape"]}
    assert store != {"color": "red"}
    del store["one"]
    with pytest.raises(KeyError):
        del store["one"]
    assert store.pop("color") == "red" and store.pop("color", "gone") == "gone"
    assert store.setdefault("n", [1]) == [1] and store.setdefault("n", 2) == [1]
    store.update({"b": 2}, c=3)
    store.update([("d", 4)])
    assert store.popitem() == ("b", 2)  # the smallest key
    store.clear()
    assert len(store) == 0
    with pytest.raises(KeyError):
        store.popitem()


def test_iteration_is_code_point_order_and_paged(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, name="order")
    keys = ["b", "B", "a", "é", "z", "Z", "10", "9", "ß", "日本", "😀", " "] + [
        f"k{i:04d}" for i in range(1100)
    ]
    store.update({k: i for i, k in enumerate(keys)})
    assert list(store) == sorted(keys)
    assert [k for k, _ in store.items()] == sorted(keys)
    assert len(store) == len(keys)
    long_key = "字" * 1024  # 3 KiB of UTF-8: more than a btree entry may hold
    store[long_key] = "ok"
    assert store[long_key] == "ok" and long_key in store


def test_exception_in_transaction_leaves_every_key(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, name="tx")
    store.update(color="red", shape="circle", n=1)
    with pytest.raises(ValueError, match="helper"), store.transaction():
        store["color"] = "green"
        del store["n"]
        store["new"] = True
        store.clear()
        raise ValueError("helper failed")
    assert dict(store) == {"color": "red", "shape": "circle", "n": 1}
    with store.transaction(lock=True):
        store["color"] = "green"
        store["run"] = store.get("run", 0) + 1
    assert dict(store) == {"color": "green", "shape": "circle", "n": 1, "run": 1}


def test_nested_transaction_is_a_savepoint(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, name="nested")
    with store.transaction(lock=True):
        store["outer"] = 1
        with pytest.raises(RuntimeError), store.transaction(lock=True):
            store["inner"] = 1
            raise RuntimeError
        with store.transaction():
            store["kept"] = 1
    assert dict(store) == {"outer": 1, "kept": 1}
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store["inner"] = 2
        raise RuntimeError
    assert "inner" not in store


def test_store_in_unit_of_work_commits_with_it(db: Database, tenant: str) -> None:
    with db.unit_of_work(tenant=tenant) as uow:
        store = uow.store("shared")
        store["a"] = 1
        with pytest.raises(KeyError), store.transaction():
            store["b"] = 2
            raise KeyError("x")
        assert dict(store) == {"a": 1}
    with pytest.raises(ZeroDivisionError), db.unit_of_work(tenant=tenant) as uow:
        uow.store("shared")["a"] = 99
        raise ZeroDivisionError
    assert dict(db.store(tenant=tenant, name="shared")) == {"a": 1}
    with pytest.raises(PersistenceError, match="not open"):
        store["late"] = 1  # the unit of work has ended


def test_list_and_delete_stores(db: Database, tenant: str) -> None:
    for name in ("c-store", "a-store", "b-store"):
        db.store(tenant=tenant, name=name)["k"] = name
    db.store(tenant=tenant, workspace="research", name="other")["k"] = 1
    with db.unit_of_work(tenant=tenant) as uow:
        first = uow.list_stores(limit=2)
        assert [s.name for s in first.items] == ["a-store", "b-store"]
        rest = uow.list_stores(limit=2, cursor=first.next_cursor)
        assert [s.name for s in rest.items] == ["c-store"] and rest.next_cursor is None
        uow.delete_store("b-store")
        with pytest.raises(NotFoundError):
            uow.delete_store("b-store")
        with pytest.raises(InvalidInputError):
            uow.list_stores(cursor="%%%")
    with db.unit_of_work(tenant=tenant) as uow:
        assert [s.name for s in uow.list_stores().items] == ["a-store", "c-store"]
    assert len(db.store(tenant=tenant, name="b-store")) == 0
    db.store(tenant=tenant, name="b-store")["k"] = "again"  # a write creates it again
    with db.unit_of_work(tenant=tenant) as uow:
        assert [s.name for s in uow.list_stores().items] == ["a-store", "b-store", "c-store"]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (1, InvalidTypeError),
        (None, InvalidTypeError),
        (("a",), InvalidTypeError),
        (b"a", InvalidTypeError),
        ("", InvalidInputError),
        ("k" * 1025, InvalidInputError),
        ("a\x00b", InvalidInputError),
        ("\ud800", InvalidInputError),
    ],
)
def test_bad_keys_are_refused(db: Database, tenant: str, key: Any, error: type) -> None:
    store = db.store(tenant=tenant, name="keys")
    store["keep"] = 1
    with pytest.raises(error):
        store[key] = 1
    with pytest.raises(error):
        store.update({"fine": 1, key: 2})
    with pytest.raises(error):
        store.setdefault(key, 1)
    with pytest.raises(error):
        store.get(key)
    with pytest.raises(TypeError if error is InvalidTypeError else ValueError):
        store.pop(key)
    assert dict(store) == {"keep": 1}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, InvalidInputError),
        (math.inf, InvalidInputError),
        ({"a": [1, -math.inf]}, InvalidInputError),
        (object(), InvalidTypeError),
        ({1: "non-str key"}, InvalidTypeError),
        ((1, 2), InvalidTypeError),
        ({1, 2}, InvalidTypeError),
        (b"bytes", InvalidTypeError),
        (2**64, InvalidInputError),
    ],
)
def test_bad_values_are_refused(db: Database, tenant: str, value: Any, error: type) -> None:
    store = db.store(tenant=tenant, name="values")
    store["keep"] = 1
    with pytest.raises(error):
        store["k"] = value
    with pytest.raises(error):
        store.update({"fine": 1, "k": value})
    with pytest.raises(error):
        store.setdefault("k", value)
    assert dict(store) == {"keep": 1}
    assert isinstance(error(), TypeError) == (error is InvalidTypeError)


def test_bad_store_and_scope_names(db: Database, tenant: str) -> None:
    with pytest.raises(InvalidInputError):
        db.store(tenant=tenant, name="Bad Name")
    with pytest.raises(InvalidTypeError):
        db.store(tenant=tenant, name=3)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        db.store(tenant="nope-" + tenant, name="s")["k"] = 1
    with pytest.raises(NotFoundError):
        len(db.store(tenant=tenant, workspace="nope", name="s"))


def test_fenced_store_writes(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, name="fenced")
    first = db.lease(tenant=tenant, name="store-writer", ttl=30)
    store.fenced(first)["owner"] = "first"
    first.release()
    second = db.lease(tenant=tenant, name="store-writer", ttl=30)
    assert second.fence > first.fence
    with store.transaction():
        store.fenced(second)["owner"] = "second"
    for write in (
        lambda s: s.__setitem__("owner", "stale"),
        lambda s: s.update(owner="stale"),
        lambda s: s.pop("owner"),
        lambda s: s.clear(),
    ):
        with pytest.raises(StaleFenceError):
            write(store.fenced(first))
    assert dict(store) == {"owner": "second"}
    second.release()


def test_tenants_cannot_see_each_others_stores(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    a, b = make_tenant(), make_tenant()
    db.store(tenant=a, name="secret")["k"] = "a's"
    assert len(db.store(tenant=b, name="secret")) == 0
    assert db.store(tenant=b, name="secret").get("k") is None
    with db.unit_of_work(tenant=b) as uow:
        assert uow.list_stores().items == []
        with pytest.raises(NotFoundError):
            uow.delete_store("secret")
    assert db.store(tenant=a, name="secret")["k"] == "a's"


def test_tenant_delete_cascades(db: Database, make_tenant: Callable[..., str]) -> None:
    a = make_tenant("research")
    db.store(tenant=a, workspace="research", name="s")["k"] = 1
    with db.unit_of_work(tenant=a) as uow:
        tenant_id = uow.tenant.id
    with db.admin() as admin:
        admin.tenants.delete(a)
    with db.owner_engine.connect() as conn:
        for table in ("stores", "store_items"):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"),
                {"t": tenant_id if db.dialect == "postgresql" else tenant_id.hex},
            ).scalar_one()
            assert count == 0, table


def test_runtime_role_sees_no_other_tenants_store_rows(
    db_pg: Database, postgres: PostgresTarget
) -> None:
    a, b = _tenants(db_pg, 2)
    db_pg.store(tenant=a, name="secret")["k"] = "a's"
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        conn.execute("SELECT * FROM persistence_enter(%s)", (token(db_pg, b),))
        for table in ("stores", "store_items"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.rollback()
        conn.execute("SELECT * FROM persistence_enter(%s)", (token(db_pg, a),))
        assert conn.execute("SELECT count(*) FROM store_items").fetchone() == (1,)
        conn.rollback()
        for table in ("stores", "store_items"):  # no tenant set: nothing at all
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def _tenants(db: Database, n: int) -> list[str]:
    import uuid

    slugs = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    with db.admin() as admin:
        for slug in slugs:
            admin.tenants.create(slug)
    return slugs


def test_oversize_values_are_refused(db: Database, tenant: str) -> None:
    small = open_like(db, max_store_value_bytes=100)
    try:
        store = small.store(tenant=tenant, name="sized")
        store["fits"] = "x" * 98  # 100 bytes of JSON with the quotes
        with pytest.raises(InvalidInputError, match="limit is 100"):
            store["big"] = "x" * 99
        with pytest.raises(InvalidInputError, match="limit"):
            store.update({"ok": 1, "big": ["y"] * 50})
        assert dict(store) == {"fits": "x" * 98}
    finally:
        small.close()


def _owner_sql(db: Database, sql: str, **params: Any) -> Any:
    """Run SQL as the table owner, outside the library."""
    statement = text(sql).bindparams(bindparam("t", type_=Uuid()))
    with db.owner_engine.begin() as conn:
        result = conn.execute(statement, params)
        return result.all() if result.returns_rows else result.rowcount


@pytest.mark.parametrize("codec", ["none", "zlib", "lz4", "zstd"])
def test_single_key_and_bulk_paths_agree(db: Database, tenant: str, codec: str) -> None:
    """Single-key reads and writes (prepared driver statements on PostgreSQL) and the
    paged and bulk statements see the same rows, values and codecs."""
    update = {"compression": codec, "compression_threshold": 0}
    compressing = open_like(db, **update)
    try:
        store = compressing.store(tenant=tenant, name="paths")  # created by the first set
        values = {"a": {"x": [1, 2.5, None, "ü"], "": {}}, "b": "text", "c": 2**63 - 1, "d": 1.0}
        for key, value in values.items():
            store[key] = value
        assert dict(store.items()) == values and list(store.values()) == list(values.values())
        store.update({"e": [True, -0.0], "f": {"n": None}})
        assert store["e"] == [True, -0.0] and store.get("f") == {"n": None} and "f" in store
        assert type(store["d"]) is float and store.get("nope", 5) == 5 and "nope" not in store
        assert store.pop("a") == values["a"] and "a" not in store
        assert store.pop("a", None) is None
        assert store.popitem() == ("b", "text")
        with store.transaction(lock=True):  # the store's row is held: a plain upsert
            store["g"] = 7
            assert store["g"] == 7
        with compressing.unit_of_work(tenant) as uow:
            in_uow = uow.store("paths")
            in_uow["h"] = {"in": "uow"}
            assert in_uow["h"] == {"in": "uow"} and in_uow.pop("g") == 7
            uow.store("fresh")["k"] = "new store in a unit of work"
        expected = {
            "c": 2**63 - 1,
            "d": 1.0,
            "e": [True, -0.0],
            "f": {"n": None},
            "h": {"in": "uow"},
        }
        assert dict(store) == expected and list(db.store(tenant=tenant, name="paths")) == list(
            expected
        )
        assert db.store(tenant=tenant, name="fresh")["k"] == "new store in a unit of work"
        with db.unit_of_work(tenant) as uow:
            tenant_id = uow.tenant.id
        rows = _owner_sql(
            db,
            "SELECT codec FROM store_items WHERE tenant_id = :t AND store = 'paths'",
            t=tenant_id,
        )
        assert {codec} == {row.codec for row in rows}
    finally:
        compressing.close()


def test_altered_items_raise_data_corruption(db: Database, tenant: str) -> None:
    store = db.store(tenant=tenant, name="altered")
    store.update(payload={"secret": "original"}, checksum=1, zlib="z", fine="ok")
    with db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    where = "WHERE tenant_id = :t AND store = 'altered' AND key = :k"
    _owner_sql(
        db, f"UPDATE store_items SET value = :v {where}", v=b'"altered"', k="payload", t=tenant_id
    )
    _owner_sql(
        db, f"UPDATE store_items SET checksum = :c {where}", c="0" * 64, k="checksum", t=tenant_id
    )
    bogus = zlib.compress(b'"z"')[:-1]
    _owner_sql(
        db,
        f"UPDATE store_items SET value = :v, codec = 'zlib' {where}",
        v=bogus,
        k="zlib",
        t=tenant_id,
    )
    for key in ("payload", "checksum", "zlib"):
        with pytest.raises(DataCorruptionError, match=f"store item '{key}'"):
            store.get(key)
        with pytest.raises(DataCorruptionError, match=f"store item '{key}'"):
            store[key]
        with pytest.raises(DataCorruptionError, match=f"store item '{key}'"):
            store.pop(key)
        assert key in store  # the failed pop rolled back
    with pytest.raises(DataCorruptionError):
        dict(store.items())
    assert store["fine"] == "ok"


def test_locked_transaction_creates_the_store_row_and_rolls_it_back(
    db: Database, tenant: str
) -> None:
    """``transaction(lock=True)`` creates the store's row if missing (a prepared driver
    statement on PostgreSQL), keeps its created_at, and a rollback undoes it."""
    with db.store(tenant=tenant, name="locked-empty").transaction(lock=True):
        pass  # nothing written: the row exists all the same
    with pytest.raises(RuntimeError), db.store(tenant=tenant, name="undone").transaction(lock=True):
        raise RuntimeError
    with db.unit_of_work(tenant) as uow:
        store = uow.store("nested-undone")
        with pytest.raises(RuntimeError), store.transaction(lock=True):
            raise RuntimeError  # the savepoint drops the row it created
        with store.transaction(lock=True):
            store["k"] = 1
        with store.transaction(lock=True), store.transaction(lock=True):
            store["k"] = 2
    with db.unit_of_work(tenant) as uow:
        stores = {s.name: s for s in uow.list_stores().items}
    assert sorted(stores) == ["locked-empty", "nested-undone"]
    assert db.store(tenant=tenant, name="nested-undone")["k"] == 2
    created = stores["locked-empty"].created_at
    counter = db.store(tenant=tenant, name="locked-empty")
    with counter.transaction(lock=True):
        counter["n"] = counter.get("n", 0) + 1
    with db.unit_of_work(tenant) as uow:
        again = {s.name: s for s in uow.list_stores().items}["locked-empty"]
    assert again.created_at == created and counter["n"] == 1


def test_pg_lock_excludes_lockers_not_readers(db_pg: Database, postgres: PostgresTarget) -> None:
    import threading

    from sqlalchemy import event

    (tenant,) = _tenants(db_pg, 1)
    store = db_pg.store(tenant=tenant, name="held")
    store["n"] = 0
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = events_of(db_pg)
    event.listen(engine, "before_cursor_execute", record)
    try:
        with store.transaction():
            pass
        entry = len(statements)
        statements.clear()
        with store.transaction(lock=True):
            store["n"] = store.get("n", 0) + 1
            # the unit of work transaction() opened (for this thread, or on asyncio for
            # the bridge's task of this thread): the only one open
            ((uow, _known),) = store._runner._open.values()  # type: ignore[attr-defined]
            assert uow._require()._session is None  # no session on this path
            locked = statements[entry:]
            # Another locker waits; a reader in another transaction does not.
            seen: list[Any] = []
            reader = threading.Thread(target=lambda: seen.append(store.get("n")))
            reader.start()
            reader.join(30)
            assert seen == [0]
            with (
                psycopg.connect(postgres.psycopg_url("owner")) as conn,
                pytest.raises(psycopg.errors.LockNotAvailable),
            ):
                conn.execute("SELECT 1 FROM stores WHERE name = 'held' FOR NO KEY UPDATE NOWAIT")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(locked) == 3 and "INSERT INTO stores" in locked[0]
    assert not any("SAVEPOINT" in s for s in statements)
    assert dict(store) == {"n": 1}
