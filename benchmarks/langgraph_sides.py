"""The two sides of the LangGraph section on one event loop: our adapter
(``persistence.langgraph`` on ``AsyncDatabase``, as the runtime role under RLS) and
langgraph-checkpoint-postgres (``AsyncPostgresSaver``, ``AsyncPostgresStore``, in a
database of their own on the same server), with the graph both run and each workload's
pair of operations."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from benchmarks.env import BenchEnv
from benchmarks.timing import AsyncOp
from persistence.database_async import AsyncDatabase

T = TypeVar("T")

#: The read cache settings our ``aget_tuple`` is measured with (each its own database).
CACHE_VARIANTS = ("off", "local", "shared")
NODES = 5
TEXT_BYTES = 2048
_WORDS = (
    "plan", "search", "tool", "answer", "context", "user", "agent", "result", "step", "thread",
    "message", "reply", "query", "source", "draft", "review", "summary", "memory", "budget",
    "token", "retry", "error", "cache", "index", "table", "value", "check", "graph", "node",
    "edge", "state", "model", "prompt", "score", "rank", "fetch", "parse", "write", "read",
)  # fmt: skip


class GraphState(TypedDict):
    text: str  # 2 KiB of prose: each node rewrites a few characters of it
    count: int


def thread_text(seed: int = 3, size: int = TEXT_BYTES) -> str:
    """Deterministic prose from a small vocabulary (compressible as a conversation is)."""
    rng = random.Random(seed)
    words: list[str] = []
    while sum(map(len, words)) + len(words) < size:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:size]


def _node(index: int) -> Callable[[GraphState], Awaitable[dict[str, Any]]]:
    async def step(state: GraphState) -> dict[str, Any]:
        text, count = state["text"], state["count"]
        at = (count * 131 + index * 409) % (len(text) - 4)
        return {"text": f"{text[:at]}{count % 10_000:04d}{text[at + 4 :]}", "count": count + 1}

    return step


def chain_graph(checkpointer: Any) -> Any:
    """A compiled StateGraph of ``NODES`` nodes in a chain, ``checkpointer`` its saver."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(GraphState)
    names = [f"n{i}" for i in range(NODES)]
    for i, name in enumerate(names):
        builder.add_node(name, _node(i))  # type: ignore[call-overload]
    for source, target in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(source, target)
    return builder.compile(checkpointer=checkpointer)


def thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


async def run_thread(graph: Any, thread_id: str, turns: int) -> None:
    """``turns`` invokes of ``graph`` on one thread: the first with the text, each later
    one resuming the thread (a new counter, the text read back from its checkpoint)."""
    config = thread_config(thread_id)
    await graph.ainvoke({"text": thread_text(), "count": 0}, config)
    for turn in range(1, turns):
        await graph.ainvoke({"count": turn * 1_000}, config)


@dataclass
class Sides:
    """Everything both sides run on, open on ``loop``."""

    env: BenchEnv
    loop: asyncio.Runner
    peer_saver: Any  # langgraph.checkpoint.postgres.aio.AsyncPostgresSaver
    peer_store: Any  # langgraph.store.postgres.aio.AsyncPostgresStore
    dbs: dict[str, AsyncDatabase] = field(default_factory=dict)  # by cache setting

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run(_awaited(awaitable))

    def saver(self, cache: str = "off", **options: Any) -> Any:
        from persistence.langgraph import AsyncPersistenceSaver

        return AsyncPersistenceSaver(self.dbs[cache], tenant=self.env.tenant, **options)

    def store(self) -> Any:
        from persistence.langgraph import AsyncPersistenceStore

        return AsyncPersistenceStore(self.dbs["off"], tenant=self.env.tenant)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _open(
    env: BenchEnv, loop: asyncio.Runner, stack: AsyncExitStack, caches: tuple[str, ...]
) -> Sides:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(env.langgraph_dsn))
    store = await stack.enter_async_context(AsyncPostgresStore.from_conn_string(env.langgraph_dsn))
    await saver.setup()
    await store.setup()
    sides = Sides(env, loop, saver, store)
    for cache in caches:
        db = env.async_database(cache=cache)
        stack.push_async_callback(db.close)
        sides.dbs[cache] = db
    return sides


@contextmanager
def open_sides(env: BenchEnv, caches: tuple[str, ...] = ("off",)) -> Iterator[Sides]:
    """One event loop with the peer's saver and store and one of our databases per read
    cache setting in ``caches``; all closed on exit."""
    with asyncio.Runner() as loop:
        stack = AsyncExitStack()
        try:
            sides = loop.run(_open(env, loop, stack, caches))
            yield sides
        finally:
            loop.run(stack.aclose())


# -- the workloads' operations: (ours, peer), each ``await op(i)`` ---------------------------


def graph_ops(sides: Sides) -> tuple[AsyncOp, AsyncOp]:
    """A fresh thread invoked, then resumed once (one op: both invokes)."""

    def op(graph: Any) -> AsyncOp:
        async def invoke_and_resume(i: int) -> None:
            await run_thread(graph, uuid.uuid4().hex, turns=2)

        return invoke_and_resume

    return op(chain_graph(sides.saver())), op(chain_graph(sides.peer_saver))


async def _seed_thread(saver: Any) -> dict[str, Any]:
    thread_id = uuid.uuid4().hex
    await run_thread(chain_graph(saver), thread_id, turns=2)
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def get_tuple_ops(sides: Sides, cache: str) -> tuple[AsyncOp, AsyncOp]:
    """``aget_tuple`` of the latest checkpoint of a thread each side wrote before; ours
    read through a database with the read cache ``cache`` (written with it off)."""
    return (
        _latest(sides, writer=sides.saver(), reader=sides.saver(cache)),
        _latest(sides, writer=sides.peer_saver, reader=sides.peer_saver),
    )


def _latest(sides: Sides, *, writer: Any, reader: Any) -> AsyncOp:
    config = sides.run(_seed_thread(writer))

    async def latest(i: int) -> None:
        found = await reader.aget_tuple(config)
        if found is None or found.checkpoint["channel_values"].get("count") is None:
            raise RuntimeError(f"no latest checkpoint for {config}")

    return latest


def _item(i: int) -> dict[str, Any]:
    """A store value of about 200 bytes as JSON; ``kind`` cycles through four letters."""
    return {"kind": "abcd"[i % 4], "n": i, "title": f"note {i:05d}", "text": thread_text(i, 140)}


async def _fill(store: Any, namespace: tuple[str, ...], count: int) -> None:
    for i in range(count):
        await store.aput(namespace, f"k{i:05d}", _item(i))


def store_ops(sides: Sides, operation: str, items: int) -> tuple[AsyncOp, AsyncOp]:
    """``aput`` of new keys, ``aget`` of existing ones or ``asearch`` of a namespace of
    ``items`` items by a filter (limit 10), on our store and the peer's."""
    ours = sides.store()
    namespace = ("bench", operation, uuid.uuid4().hex[:8])
    if operation != "put":
        for store in (ours, sides.peer_store):
            sides.run(_fill(store, namespace, items))
    build = {"put": _put_op, "get": _get_op, "search": _search_op}[operation]
    return build(ours, namespace, items), build(sides.peer_store, namespace, items)


def _put_op(store: Any, namespace: tuple[str, ...], items: int) -> AsyncOp:
    async def put(i: int) -> None:
        await store.aput(namespace, f"new{i:07d}", _item(i))

    return put


def _get_op(store: Any, namespace: tuple[str, ...], items: int) -> AsyncOp:
    async def get(i: int) -> None:
        if await store.aget(namespace, f"k{i % items:05d}") is None:
            raise RuntimeError(f"item {i % items} missing")

    return get


def _search_op(store: Any, namespace: tuple[str, ...], items: int) -> AsyncOp:
    wanted = min(10, items // 4)

    async def search(i: int) -> None:
        found = await store.asearch(namespace, filter={"kind": "a"}, limit=10)
        if len(found) != wanted or any(item.value["kind"] != "a" for item in found):
            raise RuntimeError(f"search found {len(found)} items, expected {wanted}")

    return search
