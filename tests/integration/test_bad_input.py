"""Bad input, one rule on both backends and both APIs (issue 11).

Every public method that takes a value or a name (tests/integration/bad_input/calls*.py)
is called with a table of bad (and a few good) arguments, then with generated ones, on
SQLite and on PostgreSQL, each through the sync and the asyncio API. Each call either
succeeds and round-trips exactly (same value, same types) or raises a PersistenceError
and nothing else; a refusal of input (InvalidInputError) comes before any write
statement is sent (statements are recorded, and the unit of work commits after catching
the error, so a partial write would stay); and every backend and API gives the same
outcome, call by call.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import text

from persistence import AsyncDatabase, Database, Settings
from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.fencing import FenceToken
from tests.conftest import unique_slug
from tests.fixtures.bridge import Loop, bridge
from tests.fixtures.services import PostgresTarget
from tests.integration.bad_input.arguments import STRATEGIES, TABLES, nest
from tests.integration.bad_input.calls import CALLS
from tests.integration.bad_input.model import LIMIT, SRC, Call, Env
from tests.integration.bad_input.runner import compare

pytestmark = pytest.mark.postgres


def build_env(db: Database) -> Env:
    tenant = unique_slug("bad")
    with db.admin() as admin:
        admin.tenants.create(tenant)
    with db.unit_of_work(tenant) as uow:
        uow.workflows.create("wf", SRC, tags=["t"])
        uow.states.save("base", {"a": 1}, tags=["t"])
        uow.states.save("one", 1)
        checkpoint = uow.states.create_checkpoint("base", "cp").id
        uow.runs.start("wf", run_id="r1")
        uow.artifacts.save("blob", b"blob")
        uow.store("s")["k"] = 1
        return Env(db, tenant, uow.scope.tenant_id, checkpoint)


BACKENDS = ["sqlite", "pg", "sqlite-async", "pg-async"]


@pytest.fixture(scope="module")
def databases(
    postgres: PostgresTarget, tmp_path_factory: pytest.TempPathFactory, event_loop_thread: Loop
) -> Iterator[Callable[..., dict[str, Database]]]:
    """Build a SQLite and a PostgreSQL database with the given settings, each on both
    APIs (the asyncio one through the bridge; closed after)."""
    opened: list[Database] = []

    def make(**options: Any) -> dict[str, Database]:
        made: dict[str, Database] = {}
        for api, open_url in (("", Database.from_url), ("-async", AsyncDatabase.from_url)):
            path: Path = tmp_path_factory.mktemp("bad-input") / "db.sqlite3"
            lite = open_url(f"sqlite:///{path}", **options)
            pg = open_url(postgres.runtime_url, owner_url=postgres.owner_url, **options)
            if api:
                lite, pg = bridge(lite, event_loop_thread), bridge(pg, event_loop_thread)
            lite.migrate()
            made.update({f"sqlite{api}": lite, f"pg{api}": pg})
        opened.extend(made.values())
        return made

    yield make
    for db in opened:
        db.close()


@pytest.fixture(scope="module")
def backends(databases: Callable[..., dict[str, Database]]) -> dict[str, Env]:
    limits = databases(max_state_bytes=LIMIT, max_store_value_bytes=LIMIT, max_artifact_bytes=LIMIT)
    return {name: build_env(db) for name, db in limits.items()}


# -- every call, every argument of its family, both backends -------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=[call.name for call in CALLS])
def test_every_table_argument(backends: dict[str, Env], call: Call) -> None:
    for index, arg in enumerate(TABLES[call.kind]):
        compare(backends, call, arg, CALLS.index(call) * 1000 + index)


_generated = itertools.count(10**7)


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_generated_arguments(backends: dict[str, Env], data: st.DataObject) -> None:
    call = data.draw(st.sampled_from(CALLS), label="call")
    arg = data.draw(STRATEGIES[call.kind], label="argument")
    compare(backends, call, arg, next(_generated))


# -- the rules of issue 11, spelled out -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_issue_11_findings(backends: dict[str, Env], backend: str) -> None:
    env = backends[backend]
    with env.db.unit_of_work(env.tenant) as uow:
        states = uow.states
        with pytest.raises(InvalidTypeError, match="cursor must be a str"):
            states.list(cursor=5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=r"\$\[0\]\[0\].*max_json_depth"):
            states.save("deep", nest(10_000))
        with pytest.raises(InvalidInputError, match=r"lone surrogate .* \$\.a\[0\]\.b"):
            states.save("meta", 1, metadata={"a": [{"b": "\ud800"}]})
        with pytest.raises(InvalidInputError, match="NUL at index 1"):
            states.list("a\x00")
        for huge in (2**63, -(2**63) - 1, 2**64, 10**30):
            with pytest.raises(InvalidInputError):
                states.load("base", huge)
            with pytest.raises(InvalidInputError):
                states.save("huge", 1, expected_version=huge)
            with pytest.raises(InvalidInputError):
                states.save("huge", 1, fence=FenceToken(env.tenant_id, "r", huge, "me"))
        assert states.load("deep") is None and states.load("huge") is None
    slug = unique_slug("nul")
    with pytest.raises(InvalidInputError, match="NUL"), env.db.admin() as admin:
        admin.tenants.create(slug, name="a\x00b")
    with env.db.admin() as admin:
        assert slug not in {t.slug for t in admin.tenants.list()}


_NOT_JSON = b'{"not json'
_DIGEST = hashlib.sha256(_NOT_JSON).hexdigest()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checksum_valid_payload_that_does_not_parse_is_corruption(
    backends: dict[str, Env], backend: str
) -> None:
    env = backends[backend]
    with env.db.unit_of_work(env.tenant) as uow:
        uow.runs.start("wf", run_id="torn", args={"a": 1})
        uow.store("torn")["k"] = {"a": 1}
        uow.artifacts.save("torn.json", {"a": 1})
        uow.states.save("torn", {"a": 1})
        uow.runs.register_worker("torn", {"a": 1})
    tampering = [
        "UPDATE runs SET args = :p, args_codec = 'none', args_checksum = :c WHERE id = 'torn'",
        "UPDATE store_items SET value = :p, codec = 'none', checksum = :c WHERE store = 'torn'",
        "UPDATE artifacts SET payload = :p, codec = 'none', checksum = :c, stored_size = 10 "
        "WHERE name = 'torn.json'",
        "UPDATE state_versions SET payload = :p, codec = 'none', checksum = :c "
        "WHERE state_id = 'torn'",
        "UPDATE run_workers SET info = :t WHERE name = 'torn'",
    ]
    with env.db.unit_of_work(env.tenant) as uow:
        for statement in tampering:
            params = {"p": _NOT_JSON, "c": _DIGEST, "t": _NOT_JSON.decode()}
            assert uow.session.execute(text(statement), params).rowcount == 1
    reads: list[Callable[[Any], Any]] = [
        lambda uow: uow.runs.get("torn"),
        lambda uow: uow.store("torn")["k"],
        lambda uow: uow.artifacts.load("torn.json"),
        lambda uow: uow.states.load("torn"),
        lambda uow: uow.runs.workers(),
    ]
    for read in reads:
        with (
            pytest.raises(DataCorruptionError, match="does not parse"),
            env.db.unit_of_work(env.tenant) as uow,
        ):
            read(uow)


def test_max_json_depth_is_one_setting_for_values_and_metadata(
    databases: Callable[..., dict[str, Database]],
) -> None:
    with pytest.raises(ValidationError):
        Settings(max_json_depth=255)  # orjson writes no deeper than 254 levels
    for db in databases(max_json_depth=3).values():
        slug = unique_slug("depth")
        with db.admin() as admin:
            admin.tenants.create(slug)
        # each writes a value three levels deep, then one four levels deep
        writes: list[Callable[[Any, int], Any]] = [
            lambda uow, depth: uow.states.save("s", nest(depth)),
            lambda uow, depth: uow.states.save("m", 1, metadata={"m": nest(depth - 1)}),
            lambda uow, depth: uow.store("st").__setitem__("k", nest(depth)),
            lambda uow, depth: uow.artifacts.save("a.json", nest(depth)),
            lambda uow, depth: uow.artifacts.save("b", b"x", metadata={"m": nest(depth - 1)}),
            lambda uow, depth: uow.runs.register_worker("w", {"m": nest(depth - 1)}),
        ]
        for write in writes:
            with db.unit_of_work(slug) as uow:
                write(uow, 3)
            with (
                pytest.raises(InvalidInputError, match="max_json_depth"),
                db.unit_of_work(slug) as uow,
            ):
                write(uow, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_revision_past_the_integer_column_is_refused(
    backends: dict[str, Env], backend: str
) -> None:
    env = backends[backend]
    with env.db.unit_of_work(env.tenant) as uow:
        first = uow.workflows.get("wf", 1)
        last = first.model_copy(update={"name": "full", "revision": 2**31 - 1})
        assert uow.workflows.import_revision(last)
    with (
        pytest.raises(InvalidInputError, match="next revision"),
        env.db.unit_of_work(env.tenant) as uow,
    ):
        uow.workflows.save("full", SRC + "# changed\n")
    with env.db.unit_of_work(env.tenant) as uow:
        assert [r.revision for r in uow.workflows.revisions("full")] == [2**31 - 1]
