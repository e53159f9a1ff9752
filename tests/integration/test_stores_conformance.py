"""The store behaves like a dict, operation by operation, over seeded random operations."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from persistence import Database
from persistence.stores import Store

OPERATIONS = 2000
KEYS = ["a", "b", "c", "A", "é", "日本", "😀", "k" * 1024, "with space", "0", "10", "9"]
VALUES: list[Any] = [
    0,
    -1,
    2**63 - 1,
    1.5,
    -0.0,
    1e300,
    "",
    "text",
    "\x00nul in a value",
    True,
    False,
    None,
    [],
    {},
    [1, "two", 3.0, None, [False]],
    {"nested": {"list": [1, {"x": "y"}]}, "": 0},
]
_MISSING = object()


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What an operation did: its result, or the type of exception it raised."""
    try:
        return "ok", fn()
    except KeyError:
        return "raised", KeyError


def step(rng: random.Random, store: Store, model: dict[str, Any]) -> str:
    """Apply one random operation to both and compare what they return."""
    key, value = rng.choice(KEYS), rng.choice(VALUES)
    op = rng.choice(
        [
            "set",
            "set",
            "set",
            "get",
            "getitem",
            "contains",
            "del",
            "pop",
            "pop_default",
            "setdefault",
            "update",
            "len",
            "popitem",
            "eq",
            "items",
            "clear_rarely",
        ]
    )
    if op == "set":
        store[key] = value
        model[key] = value
    elif op == "get":
        assert store.get(key, "dflt") == model.get(key, "dflt")
    elif op == "getitem":
        assert outcome(lambda: store[key]) == outcome(lambda: model[key])
    elif op == "contains":
        assert (key in store) == (key in model)
    elif op == "del":
        got = outcome(lambda: store.__delitem__(key))
        assert got == outcome(lambda: model.__delitem__(key))
    elif op == "pop":
        assert outcome(lambda: store.pop(key)) == outcome(lambda: model.pop(key))
    elif op == "pop_default":
        assert store.pop(key, "dflt") == model.pop(key, "dflt")
    elif op == "setdefault":
        assert store.setdefault(key, value) == model.setdefault(key, value)
    elif op == "update":
        batch = {rng.choice(KEYS): rng.choice(VALUES) for _ in range(rng.randint(0, 4))}
        store.update(batch)
        model.update(batch)
    elif op == "len":
        assert len(store) == len(model)
    elif op == "popitem":
        # dict pops its newest item, the store its smallest key: compare as a removal.
        got = outcome(store.popitem)
        if got[0] == "raised":
            assert model == {}
        else:
            k, v = got[1]
            assert k == min(model) and model.pop(k) == v
    elif op == "eq":
        assert store == model and dict(store) == model
    elif op == "items":
        assert list(store.items()) == sorted(model.items())
        assert list(store) == sorted(model) and list(store.values()) == [
            model[k] for k in sorted(model)
        ]
    elif op == "clear_rarely" and rng.random() < 0.1:
        store.clear()
        model.clear()
    return op


@pytest.mark.parametrize("seed", [20261122])
def test_store_matches_dict(db: Database, tenant: str, seed: int) -> None:
    rng = random.Random(seed)
    store = db.store(tenant=tenant, name="conformance")
    model: dict[str, Any] = {}
    seen: set[str] = set()
    for _ in range(OPERATIONS):
        seen.add(step(rng, store, model))
    assert dict(store) == model
    assert seen >= {"set", "del", "pop", "popitem", "update", "setdefault", "items"}


def test_store_in_unit_of_work_matches_dict(db: Database, tenant: str) -> None:
    """The same operations inside one transaction (and its savepoints) read their writes."""
    rng = random.Random(7)
    model: dict[str, Any] = {}
    with db.unit_of_work(tenant=tenant) as uow:
        store = uow.store("conformance-uow")
        for _ in range(OPERATIONS // 5):
            step(rng, store, model)
    assert dict(db.store(tenant=tenant, name="conformance-uow")) == model
