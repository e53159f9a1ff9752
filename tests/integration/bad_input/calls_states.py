"""The calls of ``uow.states`` (versions, tags, TTL, checkpoints, import)."""

from __future__ import annotations

from typing import Any

from tests.integration.bad_input.model import (
    CURSOR,
    INT,
    SECONDS,
    TEXT,
    VALUE,
    Call,
    Ctx,
    exact_json,
    expect,
    fence,
    fits,
    int_ok,
    metadata_ok,
    one_version,
    text_ok,
)

S = "states."


def _import(ctx: Ctx, update: dict[str, Any], state: Any = 1) -> bool:
    """import_version of a fresh state (value 1) with ``update`` applied to its metadata."""
    loaded = ctx.uow.states.load("one")
    assert loaded is not None
    meta = loaded.meta.model_copy(update={"state_id": f"imp{ctx.n}", **update})
    return ctx.uow.states.import_version(meta, state)


def state_calls() -> list[Call]:
    def load(ctx: Ctx, sid: str) -> Any:
        loaded = ctx.uow.states.load(sid)
        assert loaded is not None, f"state {sid!r} was not saved"
        return loaded

    return [
        Call(
            S + "save(state)",
            VALUE,
            lambda c, v: c.uow.states.save(f"v{c.n}", v),
            lambda c, v, _: expect(load(c, f"v{c.n}").state, v),
            accepts=fits,
        ),
        Call(
            S + "save(metadata)",
            VALUE,
            lambda c, v: c.uow.states.save(f"m{c.n}", 1, metadata=v),
            lambda c, v, _: expect(load(c, f"m{c.n}").meta.metadata, v or {}),
            accepts=metadata_ok,
        ),
        Call(
            S + "save(metadata={'m': value})",
            VALUE,
            lambda c, v: c.uow.states.save(f"mm{c.n}", 1, metadata={"m": v}),
            lambda c, v, _: expect(load(c, f"mm{c.n}").meta.metadata, {"m": v}),
            accepts=lambda v: exact_json({"m": v}),
        ),
        Call(
            S + "save(state_id)",
            TEXT,
            lambda c, v: c.uow.states.save(v, [1]),
            lambda c, v, _: expect(load(c, v).meta.state_id, v),
            accepts=text_ok(255),
        ),
        Call(
            S + "save(tags)",
            TEXT,
            lambda c, v: c.uow.states.save(f"t{c.n}", 1, tags=[v]),
            lambda c, v, _: expect(load(c, f"t{c.n}").meta.tags, (v,)),
            accepts=text_ok(100),
        ),
        Call(
            S + "save(expected_version)",
            INT,
            lambda c, v: c.uow.states.save(f"e{c.n}", 1, expected_version=v),
        ),
        Call(
            S + "save(max_versions)",
            INT,
            lambda c, v: c.uow.states.save(f"x{c.n}", 1, max_versions=v),
            accepts=int_ok(1, none=True),
        ),
        Call(S + "save(ttl)", SECONDS, lambda c, v: c.uow.states.save(f"ttl{c.n}", 1, ttl=v)),
        Call(
            S + "save(compression)",
            TEXT,
            lambda c, v: c.uow.states.save(f"z{c.n}", 1, compression=v),
        ),
        Call(
            S + "save(fence)",
            INT,
            lambda c, v: c.uow.states.save(f"f{c.n}", 1, fence=fence(c, v)),
            accepts=int_ok(1, 2**63 - 1),
        ),
        Call(S + "load(state_id)", TEXT, lambda c, v: c.uow.states.load(v)),
        Call(S + "load(version)", INT, lambda c, v: c.uow.states.load("base", v)),
        Call(S + "list(prefix)", TEXT, lambda c, v: c.uow.states.list(v)),
        Call(
            S + "list(limit)", INT, lambda c, v: c.uow.states.list(limit=v), accepts=int_ok(1, 1000)
        ),
        Call(S + "list(cursor)", CURSOR, lambda c, v: c.uow.states.list(cursor=v)),
        Call(S + "list_versions(state_id)", TEXT, lambda c, v: c.uow.states.list_versions(v)),
        Call(
            S + "list_versions(limit)",
            INT,
            lambda c, v: c.uow.states.list_versions("base", limit=v),
        ),
        Call(
            S + "list_versions(cursor)",
            CURSOR,
            lambda c, v: c.uow.states.list_versions("base", cursor=v),
        ),
        Call(S + "search_by_tags(tags)", TEXT, lambda c, v: c.uow.states.search_by_tags([v])),
        Call(S + "search_by_tags(match)", TEXT, lambda c, v: c.uow.states.search_by_tags(["t"], v)),
        Call(
            S + "search_by_tags(limit)",
            INT,
            lambda c, v: c.uow.states.search_by_tags(["t"], limit=v),
        ),
        Call(
            S + "search_by_tags(cursor)",
            CURSOR,
            lambda c, v: c.uow.states.search_by_tags(["t"], cursor=v),
        ),
        Call(
            S + "delete_version(version)",
            INT,
            lambda c, v: c.uow.states.delete_version(c.prepared, v),
            prepare=one_version,
        ),
        Call(S + "delete(state_id)", TEXT, lambda c, v: c.uow.states.delete(v)),
        Call(S + "rollback(to_version)", INT, lambda c, v: c.uow.states.rollback("base", v)),
        Call(
            S + "rollback(expected_version)",
            INT,
            lambda c, v: c.uow.states.rollback(c.prepared, 1, expected_version=v),
            prepare=one_version,
        ),
        Call(
            S + "rollback(ttl)",
            SECONDS,
            lambda c, v: c.uow.states.rollback(c.prepared, 1, ttl=v),
            prepare=one_version,
        ),
        Call(
            S + "rollback(max_versions)",
            INT,
            lambda c, v: c.uow.states.rollback(c.prepared, 1, max_versions=v),
            prepare=one_version,
        ),
        Call(
            S + "create_checkpoint(name)",
            TEXT,
            lambda c, v: c.uow.states.create_checkpoint(c.prepared, v).name,
            lambda c, v, name: expect(name, v),
            prepare=one_version,
        ),
        Call(
            S + "create_checkpoint(version)",
            INT,
            lambda c, v: c.uow.states.create_checkpoint(c.prepared, "cp", version=v),
            prepare=one_version,
        ),
        Call(
            S + "create_checkpoint(metadata)",
            VALUE,
            lambda c, v: c.uow.states.create_checkpoint(c.prepared, "cp", metadata=v).metadata,
            lambda c, v, meta: expect(meta, v or {}),
            prepare=one_version,
            accepts=metadata_ok,
        ),
        Call(S + "list_checkpoints(state_id)", TEXT, lambda c, v: c.uow.states.list_checkpoints(v)),
        Call(S + "restore_checkpoint(id)", TEXT, lambda c, v: c.uow.states.restore_checkpoint(v)),
        Call(
            S + "restore_checkpoint(expected_version)",
            INT,
            lambda c, v: c.uow.states.restore_checkpoint(c.env.checkpoint, expected_version=v),
        ),
        Call(
            S + "restore_checkpoint(ttl)",
            SECONDS,
            lambda c, v: c.uow.states.restore_checkpoint(c.env.checkpoint, ttl=v),
        ),
        Call(S + "delete_checkpoint(id)", TEXT, lambda c, v: c.uow.states.delete_checkpoint(v)),
        Call(S + "purge_expired(batch_size)", INT, lambda c, v: c.uow.states.purge_expired(v)),
        Call(
            S + "purge_expired(max_batches)",
            INT,
            lambda c, v: c.uow.states.purge_expired(max_batches=v),
        ),
        Call(
            S + "iter_all_versions(batch_size)",
            INT,
            lambda c, v: sum(1 for _ in c.uow.states.iter_all_versions(batch_size=v)),
        ),
        Call(S + "import_version(meta.version)", INT, lambda c, v: _import(c, {"version": v})),
        Call(S + "import_version(meta.state_id)", TEXT, lambda c, v: _import(c, {"state_id": v})),
        Call(S + "import_version(meta.metadata)", VALUE, lambda c, v: _import(c, {"metadata": v})),
        Call(S + "import_version(state)", VALUE, lambda c, v: _import(c, {}, v)),
    ]
