"""Every public write method, called in a read-only unit of work, raises ReadOnlyError on
both backends and changes nothing; an introspection guard keeps the probe list complete."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from persistence import Database
from persistence.errors import ReadOnlyError
from persistence.locks import Lease
from persistence.records import ArtifactRecord, WorkflowRecord
from persistence.records.states import LoadedState
from persistence.repositories.artifacts import ArtifactRepository
from persistence.repositories.runs import RunRepository
from persistence.repositories.states import StateRepository
from persistence.repositories.workflows import WorkflowRepository
from persistence.stores import Store
from persistence.uow import UnitOfWork

SOURCE = "def run():\n    return 1\n"
OTHER_SOURCE = "def run():\n    return 2\n"
# run id -> the transitions that bring a fresh run there
RUNS = {
    "r-pending": (),
    "r-running": ("running",),
    "r-succeeded": ("running",),  # then set_result
    "r-failed": ("running",),  # then set_exception
    "r-retrying": ("running", "retrying"),
    "r-cancelled": ("cancelled",),
}


@dataclass(frozen=True)
class Seed:
    """What the set-up wrote that a probe needs to name or to import again."""

    checkpoint_id: uuid.UUID
    version: LoadedState  # "plan" version 2, as exported
    workflow: WorkflowRecord
    artifact: ArtifactRecord
    artifact_raw: bytes
    run_document: dict[str, Any]  # "r-succeeded", as exported
    lease: Lease


Probe = Callable[[UnitOfWork, Seed], object]


def _store_transaction(uow: UnitOfWork, seed: Seed) -> None:
    # lock=True takes the store's row lock, a write; without it, a savepoint for reads
    with uow.store("s").transaction(lock=True):
        pass


# "<repository>.<method>[<case>]": one probe per public write method, more where the
# method can write nothing (an identical import, an unchanged save, a stored value).
PROBES: dict[str, Probe] = {
    "states.save": lambda uow, seed: uow.states.save("plan", {"step": 3}),
    "states.save[new state]": lambda uow, seed: uow.states.save("fresh", {"step": 1}),
    "states.save[fenced]": lambda uow, seed: uow.states.save("plan", {}, fence=seed.lease),
    "states.delete_version": lambda uow, seed: uow.states.delete_version("plan", 1),
    "states.delete_version[missing]": lambda uow, seed: uow.states.delete_version("plan", 9),
    "states.delete": lambda uow, seed: uow.states.delete("plan"),
    "states.rollback": lambda uow, seed: uow.states.rollback("plan", 1),
    "states.create_checkpoint": lambda uow, seed: uow.states.create_checkpoint("plan", "cp2"),
    "states.restore_checkpoint": lambda uow, seed: uow.states.restore_checkpoint(
        seed.checkpoint_id
    ),
    "states.delete_checkpoint": lambda uow, seed: uow.states.delete_checkpoint(seed.checkpoint_id),
    "states.purge_expired": lambda uow, seed: uow.states.purge_expired(),
    "states.import_version[new]": lambda uow, seed: uow.states.import_version(
        seed.version.meta.model_copy(update={"state_id": "imported"}), seed.version.state
    ),
    "states.import_version[identical]": lambda uow, seed: uow.states.import_version(
        seed.version.meta, seed.version.state
    ),
    "workflows.create": lambda uow, seed: uow.workflows.create("wf_new", SOURCE),
    "workflows.save[new]": lambda uow, seed: uow.workflows.save("wf_new", SOURCE),
    "workflows.save[revision]": lambda uow, seed: uow.workflows.save("wf", OTHER_SOURCE),
    "workflows.save[unchanged]": lambda uow, seed: uow.workflows.save("wf", SOURCE),
    "workflows.delete": lambda uow, seed: uow.workflows.delete("wf"),
    "workflows.import_revision[new]": lambda uow, seed: uow.workflows.import_revision(
        seed.workflow.model_copy(update={"name": "wf_imported"})
    ),
    "workflows.import_revision[identical]": lambda uow, seed: uow.workflows.import_revision(
        seed.workflow
    ),
    "artifacts.save": lambda uow, seed: uow.artifacts.save("art", b"other"),
    "artifacts.save[new]": lambda uow, seed: uow.artifacts.save("art-new", {"a": 1}),
    "artifacts.delete": lambda uow, seed: uow.artifacts.delete("art"),
    "artifacts.import_artifact[new]": lambda uow, seed: uow.artifacts.import_artifact(
        seed.artifact.model_copy(update={"name": "art-imported"}), seed.artifact_raw
    ),
    "artifacts.import_artifact[identical]": lambda uow, seed: uow.artifacts.import_artifact(
        seed.artifact, seed.artifact_raw
    ),
    "runs.start": lambda uow, seed: uow.runs.start("wf", args={"n": 1}),
    "runs.start[existing]": lambda uow, seed: uow.runs.start("wf", run_id="r-pending"),
    "runs.transition[pending-running]": lambda uow, seed: uow.runs.transition(
        "r-pending", "running"
    ),
    "runs.transition[pending-cancelled]": lambda uow, seed: uow.runs.transition(
        "r-pending", "cancelled"
    ),
    "runs.transition[running-retrying]": lambda uow, seed: uow.runs.transition(
        "r-running", "retrying", retry_at=timedelta(seconds=5)
    ),
    "runs.transition[running-succeeded]": lambda uow, seed: uow.runs.transition(
        "r-running", "succeeded"
    ),
    "runs.transition[retrying-running]": lambda uow, seed: uow.runs.transition(
        "r-retrying", "running", worker="w1"
    ),
    "runs.transition[illegal]": lambda uow, seed: uow.runs.transition("r-failed", "running"),
    "runs.claim": lambda uow, seed: uow.runs.claim(worker="w1"),
    "runs.claim[none due]": lambda uow, seed: uow.runs.claim(workflow="no-such", worker="w1"),
    "runs.set_result": lambda uow, seed: uow.runs.set_result("r-running", {"ok": True}),
    "runs.set_exception": lambda uow, seed: uow.runs.set_exception("r-running", ValueError("boom")),
    "runs.purge": lambda uow, seed: uow.runs.purge(timedelta(0)),
    "runs.set_data": lambda uow, seed: uow.runs.set_data("r-running", "k", 2),
    "runs.set_data[new key]": lambda uow, seed: uow.runs.set_data("r-running", "k2", 2),
    "runs.deterministic[new]": lambda uow, seed: uow.runs.deterministic(
        "r-running", "d2", lambda: 2
    ),
    "runs.deterministic[stored]": lambda uow, seed: uow.runs.deterministic(
        "r-running", "d", lambda: 2
    ),
    "runs.register_worker": lambda uow, seed: uow.runs.register_worker("w1", {"v": 2}),
    "runs.register_worker[new]": lambda uow, seed: uow.runs.register_worker("w2"),
    "runs.import_document[new]": lambda uow, seed: uow.runs.import_document(
        dict(seed.run_document, id="r-imported"), None
    ),
    "runs.import_document[identical]": lambda uow, seed: uow.runs.import_document(
        seed.run_document, seed.run_document
    ),
    "store.__setitem__": lambda uow, seed: uow.store("s").__setitem__("a", 2),
    "store.__setitem__[new store]": lambda uow, seed: uow.store("fresh").__setitem__("a", 1),
    "store.__delitem__": lambda uow, seed: uow.store("s").__delitem__("a"),
    "store.__delitem__[missing]": lambda uow, seed: uow.store("s").__delitem__("zz"),
    "store.set": lambda uow, seed: uow.store("s").set("a", 2),
    "store.delete": lambda uow, seed: uow.store("s").delete("a"),
    "store.pop": lambda uow, seed: uow.store("s").pop("a"),
    "store.pop[missing]": lambda uow, seed: uow.store("s").pop("zz", None),
    "store.popitem": lambda uow, seed: uow.store("s").popitem(),
    "store.popitem[empty]": lambda uow, seed: uow.store("fresh").popitem(),
    "store.clear": lambda uow, seed: uow.store("s").clear(),
    "store.update": lambda uow, seed: uow.store("s").update({"a": 2}, z=3),
    "store.update[nothing]": lambda uow, seed: uow.store("s").update(),
    "store.setdefault[missing]": lambda uow, seed: uow.store("s").setdefault("zz", 1),
    "store.setdefault[present]": lambda uow, seed: uow.store("s").setdefault("a", 1),
    "store.transaction[lock]": _store_transaction,
    "store.fenced": lambda uow, seed: uow.store("s").fenced(seed.lease).__setitem__("a", 2),
    "uow.delete_store": lambda uow, seed: uow.delete_store("s"),
    "uow.delete_store[missing]": lambda uow, seed: uow.delete_store("nope"),
}

# The public methods that write nothing; with PROBES they must cover each surface.
READS: dict[str, set[str]] = {
    "states": {
        "load",
        "list",
        "list_versions",
        "search_by_tags",
        "list_checkpoints",
        "stats",
        "iter_all_versions",
    },
    "workflows": {"get", "exists", "list", "revisions", "search"},
    "artifacts": {"load", "load_raw", "get", "exists", "list"},
    "runs": {
        "get",
        "history",
        "list",
        "children",
        "get_result",
        "get_exception",
        "get_data",
        "workers",
        "export_documents",
    },
    "store": {
        "__getitem__",
        "__iter__",
        "__len__",
        "__contains__",
        "__eq__",
        "get",
        "contains",
        "count",
        "keys",
        "items",
        "values",
        "for_database",
        "for_unit_of_work",
    },
    "uow": {"store", "list_stores", "savepoint", "on_commit", "access"},  # store(): a handle
}
SURFACES: dict[str, type] = {
    "states": StateRepository,
    "workflows": WorkflowRepository,
    "artifacts": ArtifactRepository,
    "runs": RunRepository,
    "store": Store,
    "uow": UnitOfWork,
}
# dunders that build, show or type the object rather than operate on its data
_NOT_OPERATIONS = {"__init__", "__repr__", "__subclasshook__", "__class_getitem__"}
_NOT_OPERATIONS |= {"__enter__", "__exit__"}  # the unit of work begins and ends


def public_methods(cls: type) -> set[str]:
    """Public methods of ``cls``, with the dunders it or a base (collections.abc's
    MutableMapping, for Store) defines: ``store[k] = v`` is as public as ``store.pop``."""
    names = {name for name in dir(cls) if not name.startswith("_")}
    for base in cls.__mro__[:-1]:  # not object's
        names |= {name for name in vars(base) if name.startswith("__")}
    return {name for name in names - _NOT_OPERATIONS if _is_method(getattr(cls, name, None))}


def _is_method(value: object) -> bool:
    return callable(value) and not isinstance(value, type)


def _probed(surface: str) -> set[str]:
    return {key.split(".", 1)[1].split("[")[0] for key in PROBES if key.split(".")[0] == surface}


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_every_public_method_is_probed_or_listed_as_a_read(surface: str) -> None:
    found = public_methods(SURFACES[surface])
    writes, reads = _probed(surface), READS[surface]
    assert not writes & reads, "a method is listed both as a write and as a read"
    assert found - writes - reads == set(), "a new public method: add a probe or a read"
    assert (writes | reads) - found == set(), "a listed method no longer exists"


def _seed(db: Database, tenant: str, lease: Lease) -> Seed:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("plan", {"step": 1}, tags=["a"])
        uow.states.save("plan", {"step": 2}, tags=["b"])
        checkpoint = uow.states.create_checkpoint("plan", "cp", version=1)
        workflow = uow.workflows.create("wf", SOURCE, "a workflow", ["t"])
        artifact = uow.artifacts.save("art", b"\x00bytes", metadata={"m": 1})
        for rid, steps in RUNS.items():
            uow.runs.start("wf", run_id=rid)
            for status in steps:
                uow.runs.transition(rid, status)
        uow.runs.set_result("r-succeeded", {"ok": 1})
        uow.runs.set_exception("r-failed", RuntimeError("failed"))
        uow.runs.set_data("r-running", "k", 1)
        uow.runs.deterministic("r-running", "d", lambda: 1)
        uow.runs.register_worker("w1", {"v": 1})
        uow.store("s").update({"a": 1, "b": [2], "c": {"d": None}})
    with db.unit_of_work(tenant) as uow:
        version = next(v for v in uow.states.iter_all_versions() if v.meta.version == 2)
        documents = {doc["id"]: doc for doc in uow.runs.export_documents()}
        raw = uow.artifacts.load_raw("art")
    return Seed(
        checkpoint_id=checkpoint.id,
        version=version,
        workflow=workflow,
        artifact=artifact,
        artifact_raw=raw,
        run_document=documents["r-succeeded"],
        lease=lease,
    )


def snapshot(db: Database, tenant: str) -> dict[str, Any]:
    """Everything the tenant's default workspace holds, read back."""
    with db.unit_of_work(tenant) as uow:
        return {
            "states": [(v.meta, v.state) for v in uow.states.iter_all_versions()],
            "heads": uow.states.list().items,
            "checkpoints": uow.states.list_checkpoints("plan"),
            "workflows": [uow.workflows.revisions(w.name) for w in uow.workflows.list().items],
            "artifacts": [(a, uow.artifacts.load(a.name)) for a in uow.artifacts.list().items],
            "runs": uow.runs.export_documents(),
            "workers": uow.runs.workers(),
            "stores": {s.name: dict(uow.store(s.name).items()) for s in uow.list_stores().items},
        }


@pytest.fixture
def seeded(db: Database, tenant: str) -> Iterator[Seed]:
    with db.lease(tenant, "probe-fence", ttl=60) as lease:
        yield _seed(db, tenant, lease)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_write_in_a_read_only_unit_of_work_raises_read_only_error(
    db: Database, tenant: str, seeded: Seed, name: str
) -> None:
    before = snapshot(db, tenant)
    with db.unit_of_work(tenant, read_only=True) as uow, pytest.raises(ReadOnlyError):
        PROBES[name](uow, seeded)
    assert snapshot(db, tenant) == before
