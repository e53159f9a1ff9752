"""LangGraph's store on persistence (PersistenceStore / AsyncPersistenceStore), on both
backends and both APIs: items, JSON-typed filters, namespaces, TTL, tenancy, bad input."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp, SearchOp
from sqlalchemy import Uuid, bindparam, text

from persistence import Database
from persistence.errors import (
    ConfigurationError,
    DataCorruptionError,
    InvalidInputError,
    PersistenceError,
)
from persistence.langgraph import PersistenceStore, _store, _store_async
from tests.conftest import new_tenant

MakeStore = Callable[..., Any]


def test_put_get_update_delete(db: Database, make_store: MakeStore) -> None:
    store = make_store(new_tenant(db))
    assert store.get(("users", "u1"), "profile") is None
    store.put(("users", "u1"), "profile", {"name": "Ada", "langs": ["py"]})
    first = store.get(("users", "u1"), "profile")
    assert first.value == {"name": "Ada", "langs": ["py"]}
    assert first.namespace == ("users", "u1") and first.key == "profile"
    time.sleep(0.002)
    store.put(("users", "u1"), "profile", {"name": "Ada L."})
    second = store.get(("users", "u1"), "profile")
    assert second.value == {"name": "Ada L."}
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    store.delete(("users", "u1"), "profile")
    assert store.get(("users", "u1"), "profile") is None


def test_a_batch_runs_in_order_in_one_transaction(db: Database, make_store: MakeStore) -> None:
    store = make_store(new_tenant(db))
    results = store.batch(
        [
            PutOp(("a",), "k", {"n": 1}),
            GetOp(("a",), "k"),
            PutOp(("a",), "k", None),
            GetOp(("a",), "k"),
        ]
    )
    assert results[0] is None and results[1].value == {"n": 1}
    assert results[2] is None and results[3] is None
    with pytest.raises(InvalidInputError):  # a bad op: nothing of the batch is written
        store.batch([PutOp(("a",), "x", {"n": 1}), PutOp(("a",), "y", {"n": float("nan")})])
    assert store.get(("a",), "x") is None


def _fill(store: Any) -> None:
    store.put(("docs",), "n5", {"score": 5, "tag": "a", "ok": True, "meta": {"lang": "en"}})
    store.put(("docs",), "s5", {"score": "5", "tag": "b", "ok": 1})
    store.put(("docs",), "n10", {"score": 10.5, "tag": "a", "ok": False, "list": [1, 2]})
    store.put(("docs", "sub"), "n1", {"score": 1, "tag": "c"})
    store.put(("other",), "n7", {"score": 7})


def _keys(items: list[Any]) -> set[str]:
    return {item.key for item in items}


def test_filters_compare_json_types(db: Database, make_store: MakeStore) -> None:
    store = make_store(new_tenant(db))
    _fill(store)
    search = store.search
    assert _keys(search(("docs",), filter={"score": {"$gt": 4}})) == {"n5", "n10"}  # not "5"
    assert _keys(search(("docs",), filter={"score": {"$gte": 5, "$lt": 10}})) == {"n5"}
    assert _keys(search(("docs",), filter={"score": {"$lte": 1}})) == {"n1"}
    assert _keys(search(("docs",), filter={"score": "5"})) == {"s5"}
    assert _keys(search(("docs",), filter={"score": 5})) == {"n5"}
    assert _keys(search(("docs",), filter={"ok": True})) == {"n5"}  # not 1
    assert _keys(search(("docs",), filter={"ok": 1})) == {"s5"}
    assert _keys(search(("docs",), filter={"tag": {"$ne": "a"}})) == {"s5", "n1"}
    assert _keys(search(("docs",), filter={"tag": {"$eq": "a"}, "ok": False})) == {"n10"}
    assert _keys(search(("docs",), filter={"meta": {"lang": "en"}})) == {"n5"}
    assert _keys(search(("docs",), filter={"list": [1, 2]})) == {"n10"}
    assert _keys(search(("docs",), filter={"tag": {"$gt": "a"}})) == {"s5", "n1"}
    assert _keys(search((), filter={"score": {"$gt": 6}})) == {"n10", "n7"}
    assert _keys(search(("docs",), filter={"missing": 1})) == set()


def test_search_prefix_order_limit_offset(db: Database, make_store: MakeStore) -> None:
    store = make_store(new_tenant(db))
    for n in range(5):
        store.put(("log", "day1"), f"e{n}", {"n": n})
        time.sleep(0.002)
    store.put(("logbook",), "x", {"n": 99})  # "log" is not a prefix of "logbook"
    found = store.search(("log",), limit=2)
    assert [item.key for item in found] == ["e4", "e3"]  # newest first
    assert [item.key for item in store.search(("log",), limit=2, offset=2)] == ["e2", "e1"]
    assert all(item.score is None for item in found)
    assert len(store.search(("log",), limit=100)) == 5


def test_a_prefix_matches_whole_labels_whatever_their_bytes(
    db: Database, make_store: MakeStore
) -> None:
    """A prefix is read as a range of namespaces in byte order (migration 0009's index):
    what sorts inside that range without being under the prefix is not found, and what
    is under it is, whatever the characters of the labels."""
    store = make_store(new_tenant(db))
    under = [("ab",), ("ab", "c"), ("ab", "c", "d"), ("ab", "é"), ("ab", "~"), ("ab", " ")]
    beside = [("ab-c",), ("ab,c",), ("ab c",), ("ab/",), ("abc",), ("a",), ("aa", "b"), ("ac",)]
    for n, namespace in enumerate(under + beside):
        store.put(namespace, f"k{n}", {"n": n, "kind": "x"})
    wanted = {f"k{n}" for n in range(len(under))}
    assert {item.key for item in store.search(("ab",), limit=100)} == wanted
    assert {item.key for item in store.search(("ab",), filter={"kind": "x"}, limit=100)} == wanted
    assert store.list_namespaces(prefix=("ab",)) == sorted(under)
    assert [i.key for i in store.search(("ab", "c"), limit=100)] == ["k2", "k1"]


def test_list_namespaces(db: Database, make_store: MakeStore) -> None:
    store = make_store(new_tenant(db))
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z", "b", "c")]:
        store.put(ns, "k", {"v": 1})
    everything = [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z", "b", "c")]
    assert store.list_namespaces() == everything
    assert store.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert store.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("z", "b", "c")]
    assert store.list_namespaces(prefix=("*", "b")) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("z", "b", "c"),
    ]
    assert store.list_namespaces(max_depth=1) == [("a",), ("z",)]
    assert store.list_namespaces(limit=1, offset=1) == [("a", "b", "d")]


class Clock:
    """The store's clock (both APIs' modules), moved by the test: TTLs without sleeping."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.now = datetime.now(UTC)
        for module in (_store, _store_async):
            monkeypatch.setattr(module, "utcnow", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def test_ttl_expiry_refresh_and_sweep(db: Database, make_store: MakeStore, clock: Clock) -> None:
    store = make_store(new_tenant(db), ttl={"refresh_on_read": True})
    store.put(("t",), "short", {"v": 1}, ttl=1)  # minutes
    store.put(("t",), "long", {"v": 2}, ttl=10)
    store.put(("t",), "forever", {"v": 3})
    clock.advance(61)
    assert store.get(("t",), "short") is None  # expired: never served, even unswept
    assert _keys(store.search(("t",))) == {"long", "forever"}
    assert store.sweep_ttl() == 1
    assert store.sweep_ttl() == 0
    assert _keys(store.search(("t",))) == {"long", "forever"}


def test_refresh_on_read_restarts_the_ttl(
    db: Database, make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(new_tenant(db))
    store.put(("t",), "k", {"v": 1}, ttl=1)
    for _ in range(4):  # read every 40 s: 160 s later it is still there
        clock.advance(40)
        assert store.get(("t",), "k") is not None
    clock.advance(40)
    assert store.search(("t",), refresh_ttl=False) != []
    clock.advance(30)  # 70 s after the last refreshing read
    assert store.get(("t",), "k") is None
    store.put(("t",), "k2", {"v": 1}, ttl=1)
    clock.advance(59)
    assert len(store.search(("t",))) == 1  # a search refreshes too
    clock.advance(59)
    assert store.get(("t",), "k2", refresh_ttl=False) is not None


def test_default_ttl_and_no_refresh(db: Database, make_store: MakeStore, clock: Clock) -> None:
    store = make_store(new_tenant(db), ttl={"default_ttl": 1, "refresh_on_read": False})
    store.put(("t",), "k", {"v": 1})
    clock.advance(45)
    assert store.get(("t",), "k") is not None  # read, but refresh_on_read is off
    clock.advance(20)
    assert store.get(("t",), "k") is None


def test_tenants_never_see_each_other(db: Database, make_store: MakeStore) -> None:
    a, b = make_store(new_tenant(db)), make_store(new_tenant(db))
    a.put(("shared",), "k", {"owner": "a"})
    b.put(("shared",), "k", {"owner": "b"})
    assert a.get(("shared",), "k").value == {"owner": "a"}
    assert b.get(("shared",), "k").value == {"owner": "b"}
    b.delete(("shared",), "k")
    assert a.get(("shared",), "k").value == {"owner": "a"}
    assert b.search(()) == [] and b.list_namespaces() == []


@pytest.mark.parametrize(
    "namespace", [("has.period",), (), ("",), ("langgraph", "x"), ("a", 1)], ids=repr
)
def test_bad_namespaces_are_refused(
    db: Database, make_store: MakeStore, namespace: tuple[Any, ...]
) -> None:
    store = make_store(new_tenant(db))
    calls = [
        lambda: store.batch([PutOp(namespace, "k", {"v": 1})]),
        lambda: store.put(namespace, "k", {"v": 1}),
        lambda: store.get(namespace, "k"),
        lambda: store.delete(namespace, "k"),
    ]
    if namespace[:1] == ("langgraph",):
        calls = calls[:2]  # the reserved root: reading it is allowed, writing is not
    for call in calls:  # the methods LangGraph checks itself too: the same error
        with pytest.raises(InvalidNamespaceError) as caught:
            call()
        assert isinstance(caught.value, PersistenceError)
    assert store.list_namespaces() == []


@pytest.mark.parametrize(
    "value", [[1, 2], {"x": float("nan")}, {1: "int key"}, {"s": "nul\x00"}, "text"], ids=repr
)
def test_bad_values_are_refused_before_writing(
    db: Database, make_store: MakeStore, value: Any
) -> None:
    store = make_store(new_tenant(db))
    with pytest.raises(InvalidInputError):
        store.batch([PutOp(("a",), "k", value)])
    assert store.get(("a",), "k") is None


def test_vector_search_is_refused_clearly(db: Database, make_store: MakeStore) -> None:
    with pytest.raises(ConfigurationError, match="index"):
        make_store(new_tenant(db), index={"dims": 3, "embed": lambda texts: [[0.0] * 3]})
    store = make_store(new_tenant(db))
    with pytest.raises(InvalidInputError, match="vector search"):
        store.batch([SearchOp(("a",), query="similar things")])
    with pytest.raises(InvalidInputError, match="operator"):
        store.search(("a",), filter={"n": {"$in": [1]}})
    with pytest.raises(InvalidInputError, match="ttl"):
        store.put(("a",), "k", {"v": 1}, ttl=-1)


def test_a_corrupted_item_raises(sync_db: Database) -> None:
    tenant = new_tenant(sync_db)
    store = PersistenceStore(sync_db, tenant=tenant)
    store.put(("a",), "k", {"v": 1})
    with sync_db.unit_of_work(tenant) as uow:
        tenant_id = uow.tenant.id
    with sync_db.owner_engine.begin() as conn:
        altered = text("UPDATE lg_store_items SET value = '{\"v\": 2}' WHERE tenant_id = :t")
        conn.execute(altered.bindparams(bindparam("t", type_=Uuid())), {"t": tenant_id})
    with pytest.raises(DataCorruptionError):
        store.get(("a",), "k")
