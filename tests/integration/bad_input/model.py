"""A call under test, the context it runs in, and oracles written apart from the
library's own checks: what must round-trip, what must be accepted."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from persistence import Database
from persistence.fencing import FenceToken
from persistence.uow import UnitOfWork

LIMIT = 4096  # max_state_bytes, max_store_value_bytes and max_artifact_bytes of the test
SRC = "def run():\n    return 1\n"
VALUE, TEXT, INT, CURSOR, SECONDS, ANY = "value", "text", "int", "cursor", "seconds", "any"
#: A statement that writes (what a refusal of input must come before).
WRITE = re.compile(
    r"\bINSERT\s+INTO\b|\bDELETE\s+FROM\b|\bUPDATE\s+\w+(\s+AS\s+\w+)?\s+SET\b", re.I
)


@dataclass
class Env:
    """One backend: its database and a tenant with a workflow, a state, a checkpoint."""

    db: Database
    tenant: str
    tenant_id: uuid.UUID
    checkpoint: uuid.UUID


@dataclass
class Ctx:
    env: Env
    n: int  # unique per call: fresh names
    uow: UnitOfWork = field(default=None)  # type: ignore[assignment]
    prepared: Any = None


@dataclass(frozen=True)
class Call:
    name: str
    kind: str
    run: Callable[[Ctx, Any], Any]
    check: Callable[[Ctx, Any, Any], None] | None = None
    prepare: Callable[[Ctx], Any] | None = None
    accepts: Callable[[Any], bool] | None = None
    scope: str = "uow"


# -- oracles -------------------------------------------------------------------------------


def storable(text: object) -> bool:
    return isinstance(text, str) and not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text)


def exact_json(value: object, depth: int = 0) -> bool:
    """What round-trips: recursive on purpose (bounded: nothing past 254 levels)."""
    kind = type(value)
    if kind is str:
        return not any("\ud800" <= c <= "\udfff" for c in value)  # type: ignore[union-attr]
    if value is None or kind is bool:
        return True
    if kind is int:
        return -(2**63) <= value < 2**63  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is list:
        return depth < 254 and all(exact_json(x, depth + 1) for x in value)  # type: ignore[attr-defined]
    if kind is dict:
        return depth < 254 and all(
            type(k) is str and exact_json(k) and exact_json(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False


def fits(value: object) -> bool:
    return exact_json(value) and len(orjson.dumps(value)) <= LIMIT


def metadata_ok(value: object) -> bool:
    return value is None or (type(value) is dict and exact_json(value))


def artifact_ok(value: object) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(bytes(value)) <= LIMIT
    if isinstance(value, str):
        return exact_json(value) and len(value.encode()) <= LIMIT
    return fits(value)


def text_ok(max_length: int, min_length: int = 1) -> Callable[[Any], bool]:
    return lambda v: storable(v) and min_length <= len(v) <= max_length


def int_ok(minimum: int, maximum: int = 2**31 - 1, none: bool = False) -> Callable[[Any], bool]:
    def accepts(v: Any) -> bool:
        if v is None:
            return none
        return type(v) is int and minimum <= v <= maximum

    return accepts


# -- round trips ---------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types everywhere and the same dict key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def expect(loaded: Any, given: Any) -> None:
    assert same(loaded, given), f"saved {given!r:.80} but loaded {loaded!r:.80}"


def running(ctx: Ctx) -> str:
    rid = f"run-{ctx.n}"
    ctx.uow.runs.start("wf", run_id=rid)
    ctx.uow.runs.transition(rid, "running", worker="w")
    return rid


def fence(ctx: Ctx, value: Any) -> FenceToken:
    return FenceToken(ctx.env.tenant_id, f"res-{ctx.n}", value, "holder")


def one_version(ctx: Ctx) -> str:
    ctx.uow.states.save(f"one-{ctx.n}", {"n": ctx.n})
    return f"one-{ctx.n}"
