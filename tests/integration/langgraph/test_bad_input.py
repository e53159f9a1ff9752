"""Bad input to the checkpointer is refused with a persistence.errors exception before
anything is written, on both backends and both APIs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from persistence import Database
from persistence.errors import (
    AlreadyExistsError,
    InvalidInputError,
    InvalidTypeError,
    PersistenceError,
)
from tests.conftest import new_tenant

CONFIG = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


def _checkpoint(**values: Any) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    return checkpoint


def _versioned(version: Any) -> Any:
    checkpoint = _checkpoint(a="x" * 300)  # (a blob: its version is a key of a row)
    checkpoint["channel_versions"] = {"a": version}
    return checkpoint


@pytest.fixture
def saver(db: Database, make_saver: Callable[..., Any]) -> Any:
    return make_saver(new_tenant(db))


def _on(thread: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


NOW = datetime.now(UTC)
NUL = chr(0)
BAD_PUTS = {
    "no thread id": ({"configurable": {}}, _checkpoint(a=1), {}, InvalidInputError),
    "thread id a list": (_on(["t"]), _checkpoint(), {}, InvalidTypeError),
    "thread id too long": (_on("t" * 513), _checkpoint(), {}, InvalidInputError),
    "thread id with NUL": (_on(f"a{NUL}b"), _checkpoint(), {}, InvalidInputError),
    "a value serde refuses": (CONFIG, _checkpoint(lock=threading.Lock()), {}, InvalidTypeError),
    "metadata JSON changes": (CONFIG, _checkpoint(a=1), {"when": NOW}, InvalidInputError),
    "metadata with NUL inside": (CONFIG, _checkpoint(a=1), {"x": {"y": NUL}}, InvalidInputError),
    "a version that is inf": (CONFIG, _versioned(float("inf")), {}, InvalidInputError),
    "a version that is nan": (CONFIG, _versioned(float("nan")), {}, InvalidInputError),
    "a version that is a bool": (CONFIG, _versioned(True), {}, InvalidTypeError),
}


@pytest.mark.parametrize("case", list(BAD_PUTS), ids=list(BAD_PUTS))
def test_a_bad_put_writes_nothing(saver: Any, case: str) -> None:
    config, checkpoint, metadata, error = BAD_PUTS[case]
    with pytest.raises(error) as caught:
        saver.put(config, checkpoint, metadata, checkpoint["channel_versions"])
    assert isinstance(caught.value, PersistenceError)
    assert list(saver.list(None)) == []


def test_bad_writes_and_queries(saver: Any) -> None:
    stored = saver.put(CONFIG, _checkpoint(a=1), {"step": 0}, {"a": 1})
    with pytest.raises(InvalidTypeError):
        saver.put_writes(stored, [("ch", threading.Lock())], "task")
    with pytest.raises(InvalidTypeError):
        saver.put_writes(stored, [("ch", 1)], ["not", "a", "str"])
    with pytest.raises(InvalidInputError):
        saver.put_writes({"configurable": {"thread_id": "t"}}, [("ch", 1)], "task")  # no id
    assert saver.get_tuple(CONFIG).pending_writes == []
    with pytest.raises(InvalidInputError):
        list(saver.list(CONFIG, limit=-1))
    with pytest.raises(InvalidTypeError):
        list(saver.list(CONFIG, filter=["step"]))
    with pytest.raises(InvalidTypeError):
        list(saver.list(CONFIG, filter={"when": NOW}))
    with pytest.raises(InvalidInputError):
        saver.prune(["t"], strategy="keep_some")
    with pytest.raises(InvalidTypeError):
        saver.prune("t")  # a str is not a sequence of thread ids here
    with pytest.raises(InvalidInputError):
        saver.copy_thread("t", "t")
    saver.copy_thread("t", "u")
    with pytest.raises(AlreadyExistsError):
        saver.copy_thread("t", "u")
    assert len(list(saver.list(None))) == 2  # t and its copy u, nothing else
