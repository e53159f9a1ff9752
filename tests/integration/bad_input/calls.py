"""The calls of workflows, artifacts, runs, stores, administration, units of work and
leases; ``CALLS`` is every call of the test, states' included."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from tests.integration.bad_input.calls_states import state_calls
from tests.integration.bad_input.model import (
    ANY,
    CURSOR,
    INT,
    SECONDS,
    SRC,
    TEXT,
    VALUE,
    Call,
    Ctx,
    artifact_ok,
    exact_json,
    expect,
    fence,
    fits,
    int_ok,
    metadata_ok,
    running,
    text_ok,
)

W, A, R = "workflows.", "artifacts.", "runs."


def _drop_tenant(ctx: Ctx, slug: str) -> None:
    with ctx.env.db.admin() as admin:
        admin.tenants.delete(slug)


def _lease(ctx: Ctx, name: Any, ttl: Any = 5, wait: Any = 0) -> int:
    with ctx.env.db.lease(ctx.env.tenant, name, ttl=ttl, wait=wait) as lease:
        return lease.fence


def _create_tenant(ctx: Ctx, slug: Any, name: Any = None) -> str:
    with ctx.env.db.admin() as admin:
        admin.tenants.create(slug, name=name)
    _drop_tenant(ctx, slug)  # keep the shared database clean; the create is what is tested
    return str(slug)


def _workspace(ctx: Ctx, slug: Any, name: Any = None) -> str:
    with ctx.env.db.admin() as admin:
        return admin.workspaces.create(ctx.env.tenant, slug, name=name).name


def _enter(ctx: Ctx, tenant: Any, workspace: Any = None) -> None:
    with ctx.env.db.unit_of_work(tenant, workspace):
        pass


def _db_store(ctx: Ctx, *, tenant: Any = None, name: Any = "s", workspace: Any = "default") -> Any:
    return ctx.env.db.store(
        tenant=ctx.env.tenant if tenant is None else tenant, name=name, workspace=workspace
    )


def _tenant_named(ctx: Ctx, name: Any) -> str:
    slug = fresh_tenant(ctx)
    with ctx.env.db.admin() as admin:
        admin.tenants.create(slug, name=name)
        stored = admin.tenants.get(slug).name
    _drop_tenant(ctx, slug)
    return stored


def fresh_tenant(ctx: Ctx) -> str:
    return f"fresh-{uuid.uuid4().hex[:10]}"


def _workflow_calls() -> list[Call]:
    def create(c: Ctx, **kw: Any) -> Any:
        return c.uow.workflows.create(kw.pop("name", f"w{c.n}"), kw.pop("source", SRC), **kw)

    return [
        Call(
            W + "create(name)",
            TEXT,
            lambda c, v: create(c, name=v).name,
            lambda c, v, name: expect(c.uow.workflows.get(v).name, v),
        ),
        Call(
            W + "create(source)",
            TEXT,
            lambda c, v: create(c, source=v).source,
            lambda c, v, _: expect(c.uow.workflows.get(f"w{c.n}").source, v),
        ),
        Call(
            W + "create(description)",
            TEXT,
            lambda c, v: create(c, description=v),
            lambda c, v, _: expect(c.uow.workflows.get(f"w{c.n}").description, v),
            accepts=text_ok(10_000, 0),
        ),
        Call(
            W + "create(tags)",
            TEXT,
            lambda c, v: create(c, tags=[v]),
            lambda c, v, _: expect(c.uow.workflows.get(f"w{c.n}").tags, (v,)),
        ),
        Call(W + "save(description)", TEXT, lambda c, v: c.uow.workflows.save("wf", SRC, v)),
        Call(W + "get(name)", TEXT, lambda c, v: c.uow.workflows.get(v)),
        Call(W + "get(revision)", INT, lambda c, v: c.uow.workflows.get("wf", v)),
        Call(W + "exists(name)", TEXT, lambda c, v: c.uow.workflows.exists(v)),
        Call(W + "revisions(name)", TEXT, lambda c, v: c.uow.workflows.revisions(v)),
        Call(W + "delete(name)", TEXT, lambda c, v: c.uow.workflows.delete(v)),
        Call(W + "list(limit)", INT, lambda c, v: c.uow.workflows.list(limit=v), accepts=int_ok(1)),
        Call(W + "list(cursor)", CURSOR, lambda c, v: c.uow.workflows.list(cursor=v)),
        Call(W + "search(query)", TEXT, lambda c, v: c.uow.workflows.search(v)),
        Call(W + "search(limit)", INT, lambda c, v: c.uow.workflows.search("wf", v)),
        Call(
            W + "import_revision(revision)",
            INT,
            lambda c, v: c.uow.workflows.import_revision(
                c.uow.workflows.get("wf", 1).model_copy(update={"name": f"iw{c.n}", "revision": v})
            ),
        ),
    ]


def _artifact_calls() -> list[Call]:
    def loaded(c: Ctx, v: Any) -> Any:
        return bytes(v) if isinstance(v, bytearray | memoryview) else v  # documented

    return [
        Call(
            A + "save(data)",
            VALUE,
            lambda c, v: c.uow.artifacts.save(f"a{c.n}", v),
            lambda c, v, _: expect(c.uow.artifacts.load(f"a{c.n}"), loaded(c, v)),
            accepts=artifact_ok,
        ),
        Call(
            A + "save(name)",
            TEXT,
            lambda c, v: c.uow.artifacts.save(v, b"x"),
            lambda c, v, _: expect(c.uow.artifacts.load(v), b"x"),
        ),
        Call(
            A + "save(content_type)",
            TEXT,
            lambda c, v: c.uow.artifacts.save(f"ct{c.n}", b"x", content_type=v),
        ),
        Call(
            A + "save(metadata)",
            VALUE,
            lambda c, v: c.uow.artifacts.save(f"am{c.n}", b"x", metadata=v),
            lambda c, v, _: expect(c.uow.artifacts.get(f"am{c.n}").metadata, v or {}),
            accepts=metadata_ok,
        ),
        Call(A + "load(name)", TEXT, lambda c, v: c.uow.artifacts.load(v)),
        Call(A + "load_raw(name)", TEXT, lambda c, v: c.uow.artifacts.load_raw(v)),
        Call(A + "get(name)", TEXT, lambda c, v: c.uow.artifacts.get(v)),
        Call(A + "exists(name)", TEXT, lambda c, v: c.uow.artifacts.exists(v)),
        Call(A + "delete(name)", TEXT, lambda c, v: c.uow.artifacts.delete(v)),
        Call(A + "list(prefix)", TEXT, lambda c, v: c.uow.artifacts.list(v)),
        Call(A + "list(limit)", INT, lambda c, v: c.uow.artifacts.list(limit=v), accepts=int_ok(1)),
        Call(A + "list(cursor)", CURSOR, lambda c, v: c.uow.artifacts.list(cursor=v)),
        Call(
            A + "import_artifact(metadata)",
            VALUE,
            lambda c, v: c.uow.artifacts.import_artifact(
                c.uow.artifacts.get("blob").model_copy(update={"name": f"i{c.n}", "metadata": v}),
                b"blob",
            ),
        ),
    ]


def _run_calls() -> list[Call]:
    runs = lambda c: c.uow.runs  # noqa: E731
    return [
        Call(
            R + "start(args)",
            VALUE,
            lambda c, v: runs(c).start("wf", args=v, run_id=f"s{c.n}"),
            lambda c, v, _: expect(runs(c).get(f"s{c.n}").args, v),
            accepts=exact_json,
        ),
        Call(R + "start(workflow)", TEXT, lambda c, v: runs(c).start(v)),
        Call(
            R + "start(run_id)",
            TEXT,
            lambda c, v: runs(c).start("wf", run_id=v).id,
            lambda c, v, rid: expect(runs(c).get(rid).id, rid if v is None else v),
        ),
        Call(R + "start(parent_run_id)", TEXT, lambda c, v: runs(c).start("wf", parent_run_id=v)),
        Call(
            R + "start(tags)",
            TEXT,
            lambda c, v: runs(c).start("wf", tags=[v]).id,
            lambda c, v, rid: expect(runs(c).get(rid).tags, (v,)),
            accepts=text_ok(100),
        ),
        Call(R + "get(run_id)", TEXT, lambda c, v: runs(c).get(v)),
        Call(R + "history(run_id)", TEXT, lambda c, v: runs(c).history(v)),
        Call(R + "children(run_id)", TEXT, lambda c, v: runs(c).children(v)),
        Call(R + "get_result(run_id)", TEXT, lambda c, v: runs(c).get_result(v)),
        Call(R + "get_exception(run_id)", TEXT, lambda c, v: runs(c).get_exception(v)),
        Call(R + "list(status)", TEXT, lambda c, v: runs(c).list(v)),
        Call(R + "list(workflow)", TEXT, lambda c, v: runs(c).list(workflow=v)),
        Call(R + "list(limit)", INT, lambda c, v: runs(c).list(limit=v), accepts=int_ok(1, 10_000)),
        Call(R + "list(cursor)", CURSOR, lambda c, v: runs(c).list(cursor=v)),
        Call(
            R + "transition(status)",
            TEXT,
            lambda c, v: runs(c).transition(c.prepared, v),
            prepare=running,
        ),
        Call(
            R + "transition(worker)",
            TEXT,
            lambda c, v: runs(c).transition(c.prepared, "cancelled", worker=v),
            prepare=running,
        ),
        Call(
            R + "transition(note)",
            TEXT,
            lambda c, v: runs(c).transition(c.prepared, "cancelled", note=v).id,
            lambda c, v, rid: expect(runs(c).history(rid)[-1].note, v),
            prepare=running,
        ),
        Call(
            R + "transition(retry_at)",
            SECONDS,
            lambda c, v: runs(c).transition(c.prepared, "retrying", retry_at=v),
            prepare=running,
        ),
        Call(R + "claim(worker)", TEXT, lambda c, v: runs(c).claim(worker=v)),
        Call(R + "claim(workflow)", TEXT, lambda c, v: runs(c).claim(workflow=v, worker="w")),
        Call(
            R + "set_result(value)",
            VALUE,
            lambda c, v: runs(c).set_result(c.prepared, v).id,
            lambda c, v, rid: expect(runs(c).get_result(rid), v),
            prepare=running,
            accepts=exact_json,
        ),
        Call(
            R + "set_result(note)",
            TEXT,
            lambda c, v: runs(c).set_result(c.prepared, 1, note=v),
            prepare=running,
        ),
        Call(
            R + "set_exception(exc)",
            ANY,
            lambda c, v: runs(c).set_exception(c.prepared, v),
            prepare=running,
        ),
        Call(R + "purge(older_than)", SECONDS, lambda c, v: runs(c).purge(v)),
        Call(R + "purge(statuses)", ANY, lambda c, v: runs(c).purge(timedelta(days=1), statuses=v)),
        Call(
            R + "purge(batch_size)",
            INT,
            lambda c, v: runs(c).purge(timedelta(days=1), batch_size=v),
        ),
        Call(R + "get_data(key)", TEXT, lambda c, v: runs(c).get_data("r1", v)),
        Call(
            R + "set_data(key)",
            TEXT,
            lambda c, v: runs(c).set_data("r1", v, [v]),
            lambda c, v, _: expect(runs(c).get_data("r1", v), [v]),
            accepts=text_ok(200),
        ),
        Call(
            R + "set_data(value)",
            VALUE,
            lambda c, v: runs(c).set_data("r1", f"k{c.n}", v),
            lambda c, v, _: expect(runs(c).get_data("r1", f"k{c.n}"), v),
            accepts=exact_json,
        ),
        Call(
            R + "deterministic(value)",
            VALUE,
            lambda c, v: runs(c).deterministic("r1", f"d{c.n}", lambda: v),
            lambda c, v, first: [
                expect(first, v),
                expect(runs(c).deterministic("r1", f"d{c.n}", list), v),
            ],
            accepts=exact_json,
        ),
        Call(
            R + "deterministic(factory)",
            ANY,
            lambda c, v: runs(c).deterministic("r1", f"d{c.n}", v),
        ),
        Call(
            R + "register_worker(name)",
            TEXT,
            lambda c, v: runs(c).register_worker(v),
            accepts=text_ok(200),
        ),
        Call(
            R + "register_worker(info)",
            VALUE,
            lambda c, v: runs(c).register_worker(f"wk{c.n}", v).info,
            lambda c, v, info: expect(info, v or {}),
            accepts=metadata_ok,
        ),
    ]


def _store_calls() -> list[Call]:
    store = lambda c: c.uow.store("s")  # noqa: E731

    def put(target: Any, key: Any, value: Any) -> None:
        target[key] = value

    return [
        Call("uow.store(name)", TEXT, lambda c, v: c.uow.store(v).get("k")),
        Call(
            "store[key] = value",
            VALUE,
            lambda c, v: put(store(c), f"k{c.n}", v),
            lambda c, v, _: expect(store(c)[f"k{c.n}"], v),
            accepts=fits,
        ),
        Call(
            "store[key] = 1",
            TEXT,
            lambda c, v: put(store(c), v, 1),
            lambda c, v, _: expect(store(c)[v], 1),
            accepts=text_ok(1024),
        ),
        Call("store.get(key)", TEXT, lambda c, v: store(c).get(v)),
        Call("key in store", TEXT, lambda c, v: v in store(c)),
        Call("store.pop(key, None)", TEXT, lambda c, v: store(c).pop(v, None)),
        Call("store.setdefault(key, 1)", TEXT, lambda c, v: store(c).setdefault(v, 1)),
        Call(
            "store.setdefault(value)",
            VALUE,
            lambda c, v: store(c).setdefault(f"sd{c.n}", v),
            lambda c, v, _: expect(store(c)[f"sd{c.n}"], v),
            accepts=fits,
        ),
        Call("store.update([(key, 1)])", TEXT, lambda c, v: store(c).update([(v, 1)])),
        Call("store.update(other)", ANY, lambda c, v: store(c).update(v)),
        Call(
            "store.fenced(lease)[key] = 1",
            INT,
            lambda c, v: put(store(c).fenced(fence(c, v)), "k", 1),
            accepts=int_ok(1, 2**63 - 1),
        ),
        Call(
            "uow.list_stores(limit)",
            INT,
            lambda c, v: c.uow.list_stores(limit=v),
            accepts=int_ok(1, 10_000),
        ),
        Call("uow.list_stores(cursor)", CURSOR, lambda c, v: c.uow.list_stores(cursor=v)),
        Call("uow.delete_store(name)", TEXT, lambda c, v: c.uow.delete_store(v)),
    ]


def _database_calls() -> list[Call]:
    def db_put(c: Ctx, key: Any, value: Any) -> None:
        _db_store(c)[key] = value

    return [
        Call("db.store(name)", TEXT, lambda c, v: _db_store(c, name=v).get("k"), scope="db"),
        Call("db.store(tenant)", TEXT, lambda c, v: _db_store(c, tenant=v).get("k"), scope="db"),
        Call(
            "db.store(workspace)", TEXT, lambda c, v: _db_store(c, workspace=v).get("k"), scope="db"
        ),
        Call(
            "db.store()[key] = value",
            VALUE,
            lambda c, v: db_put(c, f"dk{c.n}", v),
            lambda c, v, _: expect(_db_store(c)[f"dk{c.n}"], v),
            accepts=fits,
            scope="db",
        ),
        Call("db.store()[key] = 1", TEXT, lambda c, v: db_put(c, v, 1), scope="db"),
        Call("db.store().get(key)", TEXT, lambda c, v: _db_store(c).get(v), scope="db"),
        Call("db.store().update(other)", ANY, lambda c, v: _db_store(c).update(v), scope="db"),
        Call("admin.tenants.create(slug)", TEXT, lambda c, v: _create_tenant(c, v), scope="db"),
        Call(
            "admin.tenants.create(name)",
            TEXT,
            lambda c, v: _tenant_named(c, v),
            lambda c, v, name: None if v is None else expect(name, v),
            scope="db",
        ),
        Call("admin.workspaces.create(slug)", TEXT, lambda c, v: _workspace(c, v), scope="db"),
        Call(
            "admin.workspaces.create(name)",
            TEXT,
            lambda c, v: _workspace(c, f"ws{c.n}", v),
            lambda c, v, name: None if v is None else expect(name, v),
            scope="db",
        ),
        Call("db.unit_of_work(tenant)", TEXT, lambda c, v: _enter(c, v), scope="db"),
        Call(
            "db.unit_of_work(workspace)", TEXT, lambda c, v: _enter(c, c.env.tenant, v), scope="db"
        ),
        Call("db.lease(name)", TEXT, lambda c, v: _lease(c, v), scope="db"),
        Call("db.lease(ttl)", SECONDS, lambda c, v: _lease(c, f"l{c.n}", ttl=v), scope="db"),
        Call("db.lease(wait)", SECONDS, lambda c, v: _lease(c, f"l{c.n}", wait=v), scope="db"),
    ]


CALLS: list[Call] = [
    *state_calls(),
    *_workflow_calls(),
    *_artifact_calls(),
    *_run_calls(),
    *_store_calls(),
    *_database_calls(),
]
