"""The access descriptor: another process opens the same scope, and only that scope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persistence import AsyncDatabase, Database, Settings
from persistence.access import AccessDescriptor, describe_access
from persistence.errors import ConfigurationError, InvalidInputError
from persistence.scopes import mint, new_key
from tests.fixtures.bridge import unbridged

SRC = "def run():\n    return 1\n"

# The child gets nothing but the descriptor on stdin (and no PERSISTENCE_* environment);
# it uses the sync API (test_async_executor.py starts an asyncio executor the same way).
CHILD = """
import json, sys
from persistence import Database
from persistence.errors import ConfigurationError
db = Database.from_access(sys.stdin.read())
out = {}
with db.unit_of_work() as uow:
    out["workflows"] = [w.name for w in uow.workflows.list().items]
    out["artifacts"] = {a.name: uow.artifacts.load(a.name) for a in uow.artifacts.list().items}
    out["scope"] = [uow.tenant.slug, uow.workspace.slug]
    uow.artifacts.save("from-child", {"ok": True})
refused = []
for tenant, workspace in ((sys.argv[1], None), (None, "research")):
    try:
        db.unit_of_work(tenant, workspace)
    except ConfigurationError:
        refused.append([tenant, workspace])
try:
    db.admin()
except ConfigurationError:
    refused.append("admin")
out["refused"] = refused
print(json.dumps(out))
"""


def _seed(db: Database, make_tenant: Callable[..., str]) -> tuple[str, str]:
    mine, other = make_tenant("research"), make_tenant()
    with db.unit_of_work(mine) as uow:
        uow.workflows.create("visible", SRC)
        uow.artifacts.save("shared.txt", "parent wrote this")
    with db.unit_of_work(mine, "research") as uow:
        uow.workflows.create("other_workspace", SRC)
        uow.artifacts.save("hidden.txt", "not for the child")
    with db.unit_of_work(other) as uow:
        uow.workflows.create("other_tenant", SRC)
        uow.artifacts.save("hidden.txt", "not for the child either")
    return mine, other


def test_subprocess_reads_its_scope_and_nothing_else(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    mine, other = _seed(db, make_tenant)
    with db.unit_of_work(mine) as uow:
        descriptor = uow.access()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTENCE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", CHILD, other],
        input=descriptor.to_json(),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["scope"] == [mine, "default"]
    assert out["workflows"] == ["visible"]
    assert out["artifacts"] == {"shared.txt": "parent wrote this"}
    assert out["refused"] == [[other, None], [None, "research"], "admin"]
    with db.unit_of_work(mine) as uow:
        assert uow.artifacts.load("from-child") == {"ok": True}
    with db.unit_of_work(mine, "research") as uow:
        assert not uow.artifacts.exists("from-child")


@pytest.fixture(params=[Database, AsyncDatabase], ids=["sync", "async"])
def api(request: pytest.FixtureRequest) -> type[Database]:
    """The class of either API (these tests build descriptors, and connect nowhere)."""
    return request.param  # type: ignore[no-any-return]


def _described(settings: Settings, tenant: str = "acme", workspace: str = "research") -> Any:
    """The descriptor ``db.access`` would make for a Database on ``settings``, its token
    signed by a key of the test's own (nothing here connects to a database)."""
    key, ids = new_key("k1"), (uuid.uuid4(), uuid.uuid4())

    def sign(bind: str) -> tuple[str, int]:
        expires = int(time.time()) + 600
        return mint(key, *ids, expires=expires, bind=bind), expires

    return describe_access(settings, tenant, workspace, sign, read_only=False)


def test_descriptor_is_json_without_secrets(api: type[Database]) -> None:
    settings = Settings(
        database_url="postgresql://svc:s3cret@db.internal:5432/app",
        redis_url="redis://:r3dis@cache:6379/0",
        redis_key_prefix="acme",
        scope_key=new_key("k0").text(),
    )
    descriptor = _described(settings)
    text = descriptor.to_json()
    assert "s3cret" not in text and "r3dis" not in text
    assert settings.scope_key is not None
    assert settings.scope_key.get_secret_value().split(":")[1] not in text  # no key
    data = json.loads(text)
    assert data["database_url"] == "postgresql://svc@db.internal:5432/app"
    assert (data["tenant"], data["workspace"], data["redis_key_prefix"]) == (
        "acme",
        "research",
        "acme",
    )
    assert data["format"] == "persistence-access/2" and data["read_only"] is False
    assert AccessDescriptor.parse(text) == descriptor == AccessDescriptor.parse(data)
    with pytest.raises(Exception):  # noqa: B017 - frozen record
        descriptor.tenant = "other"  # type: ignore[misc]
    opened = api.from_access(descriptor)
    assert opened.settings.scope_key is None  # a descriptor's Database signs nothing


def test_passwords_come_from_the_opening_process(api: type[Database]) -> None:
    descriptor = _described(Settings(database_url="postgresql://svc:pw@db:5432/app"))
    explicit = api.from_access(
        descriptor, Settings(database_url="sqlite:///x.db", database_password="from-env")
    )
    assert explicit._url.password == "from-env"
    matching = api.from_access(
        descriptor.to_json(), Settings(database_url="postgresql://svc:mine@db:5432/other")
    )
    assert matching._url.password == "mine" and matching._url.database == "app"
    other_host = api.from_access(
        descriptor, Settings(database_url="postgresql://svc:mine@elsewhere:5432/app")
    )
    assert other_host._url.password is None


def test_sqlite_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    descriptor = _described(Settings(database_url="sqlite:///rel/data.sqlite3"))
    assert descriptor.database_url == f"sqlite:///{tmp_path}/rel/data.sqlite3"


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"database_url": "sqlite:///x", "tenant": "Bad Slug", "workspace": "default"}',
        '{"database_url": "postgresql://u:pw@h/d", "tenant": "a", "workspace": "default"}',
        '{"database_url": "sqlite:///x", "tenant": "a", "workspace": "default", "extra": 1}',
        # a descriptor of format 1, from before descriptors carried a scope token
        '{"format": "persistence-access/1", "database_url": "sqlite:///x", "tenant": "a", '
        '"workspace": "default", "redis_url": null, "redis_key_prefix": "persistence"}',
    ],
)
def test_malformed_descriptors_are_refused(bad: str, api: type[Database]) -> None:
    with pytest.raises(InvalidInputError):
        api.from_access(bad)


def test_unscoped_database_still_needs_a_tenant(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    with pytest.raises(InvalidInputError):
        db.unit_of_work()
    scoped = type(unbridged(db)).from_access(db.access(make_tenant()))
    with pytest.raises(ConfigurationError):
        scoped.unit_of_work("other")
