"""Run one call on one backend, and the same call on all: outcome, round trip, no
write before a refusal, the same outcome on SQLite and PostgreSQL, sync and asyncio."""

from __future__ import annotations

import reprlib
from typing import Any

import pytest
from sqlalchemy import event

from persistence import Database
from persistence.errors import InvalidInputError, PersistenceError
from tests.fixtures.bridge import is_async
from tests.fixtures.statements import events_of
from tests.integration.bad_input.model import CURSOR, INT, TEXT, WRITE, Call, Ctx, Env

_describe = reprlib.Repr()
_describe.maxlevel, _describe.maxstring, _describe.maxother, _describe.maxlong = 3, 40, 40, 40


def describe(arg: Any) -> str:
    try:
        return _describe.repr(arg)
    except ValueError:  # an int past str()'s digit limit
        return f"<{type(arg).__name__}>"


class Statements:
    """The statements both engines of a database send while recording."""

    def __init__(self, db: Database):
        self.sent: list[str] = []
        engines = (events_of(db), getattr(db.owner_engine, "sync_engine", db.owner_engine))
        self._engines = {id(e): e for e in engines}.values()

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    def __enter__(self) -> Statements:
        for engine in self._engines:
            event.listen(engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self._engines:
            event.remove(engine, "before_cursor_execute", self._record)


def attempt(call: Call, ctx: Ctx, arg: Any) -> tuple[str, Any, list[str]]:
    """Run the call; ("ok", result) or (error class name, the error), and the writes sent."""
    with Statements(ctx.env.db) as statements:
        try:
            return "ok", call.run(ctx, arg), []
        except PersistenceError as exc:
            writes = [s for s in statements.sent if WRITE.search(s)]
            return type(exc).__name__, exc, writes


def outcome(env: Env, call: Call, arg: Any, n: int) -> str:
    api = "asyncio" if is_async(env.db) else "sync"
    where = f"{env.db.dialect} ({api}): {call.name} with {describe(arg)}"
    try:
        if call.scope == "db":
            label, result, writes = attempt(call, Ctx(env, n), arg)
        else:
            with env.db.unit_of_work(env.tenant) as uow:  # commits after a caught refusal
                ctx = Ctx(env, n, uow)
                ctx.prepared = call.prepare(ctx) if call.prepare else None
                label, result, writes = attempt(call, ctx, arg)
        if label == "ok" and call.check is not None and call.scope == "db":
            call.check(Ctx(env, n), arg, result)
        elif label == "ok" and call.check is not None:
            with env.db.unit_of_work(env.tenant) as uow:
                call.check(Ctx(env, n, uow), arg, result)
    except Exception as exc:  # anything but a PersistenceError from the call itself
        pytest.fail(f"{where}: {type(exc).__name__}: {describe(exc)}", pytrace=False)
    if isinstance(result, PersistenceError):
        str(result).encode()  # a message is printable whatever the input held
    if isinstance(result, InvalidInputError):
        assert not writes, f"{where}: refused after writing: {writes[0][:200]}"
    return label


def wrong_type(kind: str, arg: Any) -> bool:
    """An argument of another type than the family's (None may be a default)."""
    if arg is None:
        return False
    if kind in (TEXT, CURSOR):
        return not isinstance(arg, str)
    return kind == INT and (isinstance(arg, bool) or not isinstance(arg, int))


def compare(backends: dict[str, Env], call: Call, arg: Any, n: int) -> None:
    """The call on every backend (SQLite, PostgreSQL, each on both APIs): one outcome."""
    outcomes = {name: outcome(env, call, arg, n) for name, env in backends.items()}
    lite = outcomes["sqlite"]
    assert set(outcomes.values()) == {lite}, f"{call.name} with {describe(arg)}: {outcomes}"
    if wrong_type(call.kind, arg):
        assert lite == "InvalidTypeError", f"{call.name} with {describe(arg)}: {lite}"
    if call.accepts is not None:
        wanted = call.accepts(arg)
        assert (lite == "ok") == wanted, (
            f"{call.name} with {describe(arg)}: {lite}, but it should be "
            f"{'accepted' if wanted else 'refused'}"
        )
