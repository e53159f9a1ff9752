"""Real LangGraph graphs on the adapter, on both backends, sync (PersistenceSaver,
graph.invoke) and async (AsyncPersistenceSaver, graph.ainvoke): a tool loop, an
interrupt resumed with Command(resume=...), a subgraph, time travel, the store in a node."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.store.base import BaseStore
from langgraph.types import Command, interrupt

from persistence import Database
from tests.conftest import new_tenant
from tests.fixtures.bridge import is_async
from tests.fixtures.langgraph import AsyncAsSync


class Graphs:
    """Runs a compiled graph with the saver (and store) of the test's ``db`` variant:
    ``invoke``/``get_state``/``history``/``update_state``, each the async method on
    the async variants."""

    def __init__(self, saver: Any, store: Any):
        self.saver, self.store = saver, store
        self.loop = saver._loop if isinstance(saver, AsyncAsSync) else None

    def compile(self, builder: StateGraph) -> Any:
        unwrap = lambda x: x.target if isinstance(x, AsyncAsSync) else x  # noqa: E731
        return builder.compile(checkpointer=unwrap(self.saver), store=unwrap(self.store))

    def _run(self, sync: Callable[[], Any], coro: Callable[[], Any]) -> Any:
        return sync() if self.loop is None else self.loop.run(coro())

    def invoke(self, graph: Any, value: Any, config: dict[str, Any]) -> Any:
        return self._run(lambda: graph.invoke(value, config), lambda: graph.ainvoke(value, config))

    def get_state(self, graph: Any, config: dict[str, Any]) -> Any:
        return self._run(lambda: graph.get_state(config), lambda: graph.aget_state(config))

    def history(self, graph: Any, config: dict[str, Any]) -> list[Any]:
        async def collect() -> list[Any]:
            return [s async for s in graph.aget_state_history(config)]

        return self._run(lambda: list(graph.get_state_history(config)), collect)

    def update_state(self, graph: Any, config: dict[str, Any], values: Any) -> Any:
        return self._run(
            lambda: graph.update_state(config, values), lambda: graph.aupdate_state(config, values)
        )


@pytest.fixture
def graphs(db: Database, make_saver: Callable[..., Any], make_store: Callable[..., Any]) -> Graphs:
    tenant = new_tenant(db)
    return Graphs(make_saver(tenant), make_store(tenant))


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


# -- a tool loop -----------------------------------------------------------------------


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Chat(TypedDict):
    messages: Annotated[list[Any], add_messages]


def _agent(state: Chat) -> dict[str, Any]:
    """A scripted model: asks for multiply(n, 2) until a result reaches 16."""
    last = state["messages"][-1]
    n = int(last.content) if isinstance(last, ToolMessage) else 1
    if n >= 16:
        return {"messages": [AIMessage(content=f"done: {n}")]}
    call = {"name": "multiply", "args": {"a": n, "b": 2}, "id": f"call-{n}"}
    return {"messages": [AIMessage(content="", tool_calls=[call])]}


def test_a_tool_loop_runs_and_resumes_its_thread(graphs: Graphs) -> None:
    builder = StateGraph(Chat)
    builder.add_node("agent", _agent)
    builder.add_node("tools", ToolNode([multiply]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = graphs.compile(builder)
    config = _thread()
    result = graphs.invoke(graph, {"messages": [HumanMessage(content="go")]}, config)
    assert result["messages"][-1].content == "done: 16"
    tools = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
    assert tools == ["2", "4", "8", "16"]
    # a second turn on the same thread starts from everything the first one stored
    again = graphs.invoke(graph, {"messages": [HumanMessage(content="again")]}, config)
    assert len(again["messages"]) == 2 * len(result["messages"])
    assert again["messages"][: len(result["messages"])] == result["messages"]
    state = graphs.get_state(graph, config)
    assert state.values["messages"][-1].content == "done: 16" and state.next == ()


# -- an interrupt ----------------------------------------------------------------------


class Approval(TypedDict):
    request: str
    decision: str
    log: Annotated[list[str], operator.add]


def _ask(state: Approval) -> dict[str, Any]:
    answer = interrupt({"question": f"approve {state['request']}?"})
    return {"decision": answer, "log": ["asked"]}


def _act(state: Approval) -> dict[str, Any]:
    return {"log": [f"acted on {state['decision']}"]}


def test_an_interrupt_is_resumed_with_a_command(graphs: Graphs) -> None:
    builder = StateGraph(Approval)
    builder.add_node("ask", _ask)
    builder.add_node("act", _act)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    graph = graphs.compile(builder)
    config = _thread()
    first = graphs.invoke(graph, {"request": "refund", "log": []}, config)
    assert first["__interrupt__"][0].value == {"question": "approve refund?"}
    paused = graphs.get_state(graph, config)
    assert paused.next == ("ask",) and paused.tasks[0].interrupts
    done = graphs.invoke(graph, Command(resume="yes"), config)
    assert done["decision"] == "yes" and done["log"] == ["asked", "acted on yes"]
    assert graphs.get_state(graph, config).next == ()


# -- a subgraph ------------------------------------------------------------------------


class Outer(TypedDict):
    text: str
    steps: Annotated[list[str], operator.add]


class Inner(TypedDict):
    text: str


def _inner_graph() -> StateGraph:
    inner = StateGraph(Inner)
    inner.add_node("upper", lambda s: {"text": s["text"].upper()})
    inner.add_node("ask", lambda s: {"text": s["text"] + interrupt("suffix?")})
    inner.add_edge(START, "upper")
    inner.add_edge("upper", "ask")
    inner.add_edge("ask", END)
    return inner


def test_a_subgraph_checkpoints_in_its_namespace_and_resumes(graphs: Graphs) -> None:
    builder = StateGraph(Outer)
    builder.add_node("prepare", lambda s: {"steps": ["prepare"]})
    builder.add_node("inner", _inner_graph().compile())
    builder.add_node("finish", lambda s: {"steps": ["finish"]})
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "inner")
    builder.add_edge("inner", "finish")
    graph = graphs.compile(builder)
    config = _thread()
    graphs.invoke(graph, {"text": "hi", "steps": []}, config)
    namespaces = {
        t.config["configurable"]["checkpoint_ns"] for t in graphs.saver.list(config, limit=100)
    }
    assert "" in namespaces and any(ns.startswith("inner:") for ns in namespaces)
    done = graphs.invoke(graph, Command(resume="!"), config)
    assert done["text"] == "HI!"
    assert done["steps"] == ["prepare", "finish"]


# -- time travel -----------------------------------------------------------------------


class Counter(TypedDict):
    n: int
    trail: Annotated[list[int], operator.add]


def _counter() -> StateGraph:
    builder = StateGraph(Counter)
    builder.add_node("one", lambda s: {"n": s["n"] + 1, "trail": [s["n"] + 1]})
    builder.add_node("two", lambda s: {"n": s["n"] * 10, "trail": [s["n"] * 10]})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", END)
    return builder


def test_time_travel_forks_from_an_older_checkpoint(graphs: Graphs) -> None:
    graph = graphs.compile(_counter())
    config = _thread()
    assert graphs.invoke(graph, {"n": 1, "trail": []}, config)["n"] == 20
    history = graphs.history(graph, config)
    assert [s.values.get("n") for s in history] == [20, 2, 1, None]
    after_one = next(s for s in history if s.next == ("two",))
    # update from the older checkpoint, then run on from there: a new branch
    forked = graphs.update_state(graph, after_one.config, {"n": 5})
    result = graphs.invoke(graph, None, forked)
    assert result["n"] == 50 and result["trail"] == [2, 50]
    latest = graphs.get_state(graph, config)
    assert latest.values["n"] == 50
    assert (
        latest.parent_config["configurable"]["checkpoint_id"]
        == (forked["configurable"]["checkpoint_id"])
    )
    # the old branch is still there, untouched
    replay = graphs.get_state(graph, history[0].config)
    assert replay.values["n"] == 20


# -- the store in a node ---------------------------------------------------------------


class Memory(TypedDict):
    user: str
    fact: str
    known: list[str]


def _remember(state: Memory, *, store: BaseStore) -> dict[str, Any]:
    namespace = ("memories", state["user"])
    store.put(namespace, str(uuid.uuid4()), {"fact": state["fact"]})
    return {"known": sorted(item.value["fact"] for item in store.search(namespace))}


async def _aremember(state: Memory, *, store: BaseStore) -> dict[str, Any]:
    namespace = ("memories", state["user"])
    await store.aput(namespace, str(uuid.uuid4()), {"fact": state["fact"]})
    return {"known": sorted(item.value["fact"] for item in await store.asearch(namespace))}


def test_the_store_is_used_from_a_node_across_threads(graphs: Graphs) -> None:
    builder = StateGraph(Memory)
    builder.add_node("remember", _remember if graphs.loop is None else _aremember)
    builder.add_edge(START, "remember")
    graph = graphs.compile(builder)
    graphs.invoke(graph, {"user": "ada", "fact": "likes tea", "known": []}, _thread())
    second = graphs.invoke(graph, {"user": "ada", "fact": "writes code", "known": []}, _thread())
    assert second["known"] == ["likes tea", "writes code"]  # another thread, same memories
    other = graphs.invoke(graph, {"user": "bob", "fact": "plays chess", "known": []}, _thread())
    assert other["known"] == ["plays chess"]


def test_the_variants_are_what_they_claim(db: Database, graphs: Graphs) -> None:
    assert (graphs.loop is not None) == is_async(db)


def test_a_thread_resumes_after_its_latest_run_is_deleted(graphs: Graphs) -> None:
    """delete_for_runs of the run that wrote the head: the head moves back to the newest
    checkpoint left, and single-writer resumes carry on from it."""
    graph = graphs.compile(_counter())
    thread = _thread()["configurable"]["thread_id"]

    def run(run_id: str, value: Any) -> dict[str, Any]:
        config = {"configurable": {"thread_id": thread}, "metadata": {"run_id": run_id}}
        result: dict[str, Any] = graphs.invoke(graph, value, config)
        return result

    assert run("r1", {"n": 1, "trail": []})["n"] == 20
    assert run("r2", {"n": 2, "trail": []})["n"] == 30
    graphs.saver.delete_for_runs(["r2"])
    config = {"configurable": {"thread_id": thread}}
    assert graphs.get_state(graph, config).values["n"] == 20  # r1's end is the head again
    assert run("r3", {"n": 3, "trail": []})["n"] == 40
