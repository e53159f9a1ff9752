"""``persistence demo``: a short tour of the product on the configured database.

Two demo tenants; the first one walks through every kind of object (versioned state,
a workflow, artifacts, a key/value store, a run, a lease), the second one shows it can
see none of them. Every line is a real result; the tour can run again on the same
database (names are stable, version and fence numbers keep growing).
"""

from __future__ import annotations

import click

from persistence.cli._common import CliContext, emit, pass_cli
from persistence.database import Database
from persistence.errors import (
    AlreadyExistsError,
    LockNotAcquiredError,
    NotFoundError,
    VersionConflictError,
)
from persistence.settings import mask_url

__all__ = ["DEMO_TENANTS", "register"]

#: The demo's tenants and their extra workspaces; reused when they exist already.
DEMO_TENANTS = {"demo-acme": "research", "demo-globex": "support"}

#: The objects of the tour (in the first tenant's workspace); stable across re-runs.
WORKFLOW = "summarize_notes"
WORKFLOW_SOURCE = "def run(notes: list[str]) -> str:\n    return ' / '.join(notes)\n"
BYTES_ARTIFACT = "demo/logo.bin"
JSON_ARTIFACT = "demo/report.json"
STORE = "demo-memory"
COUNTER = "tour-count"
LEASE = "demo-tour"
WORKER = "demo-worker"


def _ensure_tenants(db: Database) -> list[str]:
    """Create the demo tenants and workspaces, or reuse them (the demo runs twice)."""
    lines = []
    with db.admin() as admin:
        for slug, workspace in DEMO_TENANTS.items():
            try:
                admin.tenants.create(slug, name=f"Demo {slug.removeprefix('demo-').title()}")
                lines.append(f"created tenant {slug} (workspace default)")
            except AlreadyExistsError:
                lines.append(f"reused tenant {slug}")
            if admin.tenants.get(slug).status != "active":
                admin.tenants.resume(slug)
            try:
                admin.workspaces.create(slug, workspace)
                lines.append(f"created workspace {slug}/{workspace}")
            except AlreadyExistsError:
                lines.append(f"reused workspace {slug}/{workspace}")
    return lines


def _isolation(db: Database) -> list[str]:
    """Each tenant opens its own workspace and fails to open the other's."""
    lines = []
    (a, a_ws), (b, b_ws) = DEMO_TENANTS.items()
    for mine, own_ws, other_ws in ((a, a_ws, b_ws), (b, b_ws, a_ws)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            lines.append(f"{mine}: unit of work on {uow.tenant.slug}/{uow.workspace.slug}")
        try:
            with db.unit_of_work(tenant=mine, workspace=other_ws):
                lines.append(f"{mine}: UNEXPECTED access to workspace {other_ws}")
        except NotFoundError:
            lines.append(f"{mine}: cannot see the other tenant's workspace {other_ws!r}")
    return lines


def _parent(parent: int | None) -> str:
    return "no parent: a new state" if parent is None else f"parent {parent}"


def _states(db: Database) -> list[str]:
    """Each tenant saves a state; the other tenant cannot load it under the same id."""
    lines = []
    (a, a_ws), (b, b_ws) = DEMO_TENANTS.items()
    for mine, own_ws in ((a, a_ws), (b, b_ws)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            meta = uow.states.save(f"{mine}-plan", {"owner": mine, "steps": ["plan", "act"]})
            lines.append(
                f"{mine}: saved state {meta.state_id!r} version {meta.version}"
                f" ({_parent(meta.parent_version)})"
            )
    for mine, own_ws, other in ((a, a_ws, b), (b, b_ws, a)):
        with db.unit_of_work(tenant=mine, workspace=own_ws) as uow:
            own = uow.states.load(f"{mine}-plan")
            theirs = uow.states.load(f"{other}-plan")
        owner = own.state["owner"] if own is not None else None
        lines.append(f"{mine}: loads its own state (owner {owner})")
        seen = "cannot load" if theirs is None else "UNEXPECTEDLY loaded"
        lines.append(f"{mine}: {seen} the other tenant's state {other + '-plan'!r}")
    return lines


def _versions(db: Database, tenant: str, workspace: str) -> list[str]:
    """A second save, a save with a stale expected_version, the history."""
    lines = []
    state_id = f"{tenant}-plan"
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        loaded = uow.states.load(state_id)
        assert loaded is not None  # saved by _states just before
        state, meta = loaded
        new = uow.states.save(
            state_id, {**state, "steps": [*state["steps"], "review"]}, expected_version=meta.version
        )
        lines.append(
            f"{tenant}: saved {state_id!r} again with expected_version {meta.version}:"
            f" version {new.version} ({_parent(new.parent_version)})"
        )
        try:
            uow.states.save(state_id, {"stale": True}, expected_version=meta.version)
            lines.append(f"{tenant}: UNEXPECTED stale save accepted")
        except VersionConflictError as exc:
            lines.append(
                f"{tenant}: save with stale expected_version {exc.expected}:"
                f" VersionConflictError (latest is {exc.actual}), nothing written"
            )
        page = uow.states.list_versions(state_id, limit=6)
    shown = ", ".join(str(m.version) for m in page.items)
    more = ", ..." if page.next_cursor is not None else ""
    lines.append(f"{tenant}: history of {state_id!r} (newest first): {shown}{more}")
    return lines


def _workflow_and_artifacts(db: Database, tenant: str, workspace: str) -> list[str]:
    """A workflow saved and fetched by name; artifacts saved and loaded."""
    lines = []
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        existed = uow.workflows.exists(WORKFLOW)
        saved = uow.workflows.save(
            WORKFLOW, WORKFLOW_SOURCE, description="Join notes into one line", tags=("demo",)
        )
        how = "same source as before: no new revision" if existed else "new workflow"
        lines.append(f"{tenant}: saved workflow {WORKFLOW!r}: revision {saved.revision} ({how})")
        fetched = uow.workflows.get(WORKFLOW)
        first_line = fetched.source.splitlines()[0]
        lines.append(
            f"{tenant}: fetched {WORKFLOW!r} by name: revision {fetched.revision}, {first_line!r}"
        )
        uow.artifacts.save(BYTES_ARTIFACT, b"\x89PNG demo", content_type="image/png")
        uow.artifacts.save(JSON_ARTIFACT, {"score": 0.93, "rows": [1, 2]})
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        data = uow.artifacts.load(BYTES_ARTIFACT)
        report = uow.artifacts.load(JSON_ARTIFACT)
        meta = uow.artifacts.get(JSON_ARTIFACT)
    lines.append(f"{tenant}: artifact {BYTES_ARTIFACT!r} saved and loaded: {data!r}")
    lines.append(
        f"{tenant}: artifact {JSON_ARTIFACT!r} saved and loaded as {meta.kind}"
        f" ({meta.size} bytes): {report!r}"
    )
    return lines


def _store(db: Database, tenant: str, workspace: str) -> tuple[list[str], int]:
    """Set/get in a key/value store and a locked increment; returns the tour number."""
    store = db.store(tenant=tenant, workspace=workspace, name=STORE)
    store["greeting"] = f"hello from {tenant}"
    lines = [f"{tenant}: store {STORE!r}: set and got 'greeting' = {store['greeting']!r}"]
    with store.transaction(lock=True):
        count = int(store.get(COUNTER, 0)) + 1
        store[COUNTER] = count
    lines.append(
        f"{tenant}: store {STORE!r}: transaction(lock=True) incremented {COUNTER!r}"
        f" to {count} (one per demo run)"
    )
    return lines, count


def _run(db: Database, tenant: str, workspace: str, run_id: str) -> list[str]:
    """Start a run of the workflow, claim it as a worker, store its result."""
    lines = []
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        run = uow.runs.start(WORKFLOW, args={"notes": ["plan", "act"]}, run_id=run_id)
        lines.append(f"{tenant}: started run {run.id!r} of {run.workflow!r}: {run.status}")
        if run.status == "pending":
            job = uow.runs.claim(workflow=WORKFLOW, worker=WORKER)
            if job is None:
                lines.append(f"{tenant}: UNEXPECTED nothing to claim")
                return lines
            lines.append(
                f"{tenant}: {WORKER} claimed run {job.id!r}: {job.status} (attempt {job.attempts})"
            )
            # The library never executes workflow source; the worker computes the result.
            done = uow.runs.set_result(job.id, " / ".join(job.args["notes"]), worker=WORKER)
            lines.append(
                f"{tenant}: set_result on {done.id!r}: {done.status},"
                f" result {uow.runs.get_result(done.id)!r}"
            )
        history = " -> ".join(h.status for h in uow.runs.history(run.id))
    lines.append(f"{tenant}: history of run {run_id!r}: {history}")
    return lines


def _lease(db: Database, tenant: str, other: str, workspace: str) -> list[str]:
    """A lease with its fence (on the database backend without Redis)."""
    settings = db.settings
    backend = (
        "redis"
        if settings.lease_backend == "redis"
        or (settings.lease_backend == "auto" and settings.redis_url and db.dialect == "postgresql")
        else "sql"
    )
    where = f"{backend} lease backend"
    if backend == "redis" and not settings.redis_url:
        return [f"{tenant}: skipped the lease step: lease_backend='redis' needs a Redis URL"]
    lines = []
    try:
        lease = db.lease(tenant=tenant, name=LEASE, ttl=10)
    except LockNotAcquiredError as exc:
        reason = "Redis unreachable?" if backend == "redis" else "held by another process?"
        return [f"{tenant}: skipped the lease step ({where}, {reason}): {exc}"]
    with lease:
        lines.append(
            f"{tenant}: acquired lease {LEASE!r} ({where}): fence {lease.fence}"
            " (grows on every acquire)"
        )
        try:
            db.lease(tenant=tenant, name=LEASE).release()
            lines.append(f"{tenant}: UNEXPECTED second holder of lease {LEASE!r}")
        except LockNotAcquiredError:
            lines.append(f"{tenant}: a second acquire of {LEASE!r} is refused while it is held")
        store = db.store(tenant=tenant, workspace=workspace, name=STORE)
        store.fenced(lease)["writer"] = f"holder of fence {lease.fence}"
        lines.append(f"{tenant}: fenced store write with fence {lease.fence} accepted")
        with db.lease(tenant=other, name=LEASE, ttl=10) as theirs:
            lines.append(
                f"{other}: holds its own lease {LEASE!r} at the same time (fence {theirs.fence}):"
                " leases are per tenant"
            )
    lines.append(f"{tenant}: released lease {LEASE!r}")
    return lines


def _not_visible(db: Database, tenant: str, workspace: str, owner: str, run_id: str) -> list[str]:
    """``tenant`` looks up ``owner``'s objects by their names and finds none of them."""
    found: dict[str, bool] = {}
    with db.unit_of_work(tenant=tenant, workspace=workspace) as uow:
        found[f"state {owner + '-plan'!r}"] = uow.states.load(f"{owner}-plan") is not None
        found[f"workflow {WORKFLOW!r}"] = uow.workflows.exists(WORKFLOW)
        found[f"artifact {JSON_ARTIFACT!r}"] = uow.artifacts.exists(JSON_ARTIFACT)
        try:
            uow.runs.get(run_id)
            found[f"run {run_id!r}"] = True
        except NotFoundError:
            found[f"run {run_id!r}"] = False
    store = db.store(tenant=tenant, workspace=workspace, name=STORE)
    found[f"store key {STORE}/greeting"] = "greeting" in store
    return [
        f"{tenant}: {'UNEXPECTEDLY sees' if seen else 'cannot see'} {owner}'s {what}"
        for what, seen in found.items()
    ]


@click.command("demo")
@pass_cli
def demo(cli: CliContext) -> None:
    """Migrate, create two tenants and tour states, workflows, artifacts, stores, runs and
    leases, showing that each tenant sees only its own data.

    Uses the configured database (default: the embedded SQLite file); safe to re-run.
    On PostgreSQL it needs the runtime role (--database-url) for the tour and the owner
    (--owner-url) to migrate and create the tenants.
    """
    db = cli.db
    lines = [f"database {mask_url(db.settings.database_url)}"]
    db.migrate()
    lines.append(f"migrated to {db.current_revision()}")
    lines += _ensure_tenants(db)
    lines += _isolation(db)
    lines += _states(db)
    (a, a_ws), (b, b_ws) = DEMO_TENANTS.items()
    lines += _versions(db, a, a_ws)
    lines += _workflow_and_artifacts(db, a, a_ws)
    store_lines, tour = _store(db, a, a_ws)
    lines += store_lines
    run_id = f"tour-{tour}"
    lines += _run(db, a, a_ws, run_id)
    lines += _lease(db, a, b, a_ws)
    lines += _not_visible(db, b, b_ws, a, run_id)
    with db.admin() as admin:
        tenants = [t for t in admin.tenants.list() if t.slug in DEMO_TENANTS]
    if cli.as_json:
        emit(cli, {"steps": lines, "tenants": tenants})
        return
    for line in lines:
        click.echo(line)
    click.echo("")
    emit(cli, tenants, ("slug", "name", "status", "id"))


def register(group: click.Group) -> None:
    group.add_command(demo)
