"""An access descriptor is a capability for exactly one scope: any field edited, an
expired one, a descriptor's Database asked to issue descriptors or open other scopes,
a read-only one writing: each refused with a PersistenceError, nothing written."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from persistence import Database
from persistence.errors import (
    ConfigurationError,
    PersistenceError,
    ReadOnlyError,
    ScopeTokenError,
)
from tests.fixtures.bridge import bridge, is_async, unbridged


def _open(db: Any, descriptor: Any) -> Any:
    """``Database.from_access(descriptor)`` on ``db``'s API (bridged when async)."""
    opened = type(unbridged(db)).from_access(descriptor)
    return bridge(opened, object.__getattribute__(db, "_loop")) if is_async(db) else opened


def _save(opened: Any, name: str = "doc") -> None:
    try:
        with opened.unit_of_work() as uow:
            uow.states.save(name, {"by": "descriptor"})
    finally:
        opened.close()


def _exists(db: Database, tenant: str, workspace: str, name: str = "doc") -> bool:
    with db.unit_of_work(tenant, workspace) as uow:
        return uow.states.load(name) is not None


def _resigned(token: str) -> str:
    """The token with its signature's last digit changed."""
    return token[:-1] + ("0" if token[-1] != "0" else "1")


EDITS: dict[str, Callable[[dict[str, Any], dict[str, str]], None]] = {
    "database_url": lambda d, o: d.update(database_url=d["database_url"] + "x"),
    "tenant": lambda d, o: d.update(tenant=o["tenant"]),
    "workspace": lambda d, o: d.update(workspace="research"),
    "redis_url": lambda d, o: d.update(redis_url="redis://127.0.0.1:6379/3"),
    "redis_key_prefix": lambda d, o: d.update(redis_key_prefix="issuer"),
    "read_only": lambda d, o: d.update(read_only=True),
    "expires_at": lambda d, o: d.update(expires_at="2100-01-01T00:00:00Z"),
    "token signature": lambda d, o: d.update(token=_resigned(d["token"])),
    "token scope": lambda d, o: d.update(token=d["token"].replace(o["mine"], o["other"])),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_a_descriptor_with_any_field_edited_is_refused(
    db: Database, make_tenant: Callable[..., str], field: str
) -> None:
    mine, other = make_tenant("research"), make_tenant()
    descriptor = db.access(mine, ttl=600)
    ids = {}
    for key, tenant in (("mine", mine), ("other", other)):
        with db.unit_of_work(tenant) as uow:
            ids[key] = uow.scope.tenant_id.hex
    data = json.loads(descriptor.to_json())
    EDITS[field](data, {"tenant": other, **ids})
    assert data != json.loads(descriptor.to_json())
    with pytest.raises(PersistenceError):
        _save(_open(db, data))
    for tenant, workspace in ((mine, "default"), (mine, "research"), (other, "default")):
        assert not _exists(db, tenant, workspace)
    _save(_open(db, descriptor))  # the unedited one still works
    assert _exists(db, mine, "default")


def test_an_expired_descriptor_is_refused(db: Database, make_tenant: Callable[..., str]) -> None:
    tenant = make_tenant()
    descriptor = db.access(tenant, ttl=1)
    opened = _open(db, descriptor)  # opened in time ...
    time.sleep(max(0.0, descriptor.expires_at.timestamp() - time.time()) + 0.05)
    with pytest.raises(ScopeTokenError, match="expired") as info:
        _save(opened)  # ... used after its expiry
    assert info.value.expired
    with pytest.raises(ScopeTokenError, match="expired"):
        _open(db, descriptor)
    assert not _exists(db, tenant, "default")


def test_a_descriptor_database_issues_nothing_and_opens_nothing_else(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    mine, other = make_tenant("research"), make_tenant()
    opened = _open(db, db.access(mine, ttl=600))
    try:
        with pytest.raises(ConfigurationError, match="cannot issue"):
            opened.access(mine)
        with opened.unit_of_work() as uow, pytest.raises(ConfigurationError, match="cannot issue"):
            uow.access()
        for tenant, workspace in ((other, None), (mine, "research"), (other, "default")):
            with pytest.raises(ConfigurationError, match="opened for"):
                opened.unit_of_work(tenant, workspace)
        with pytest.raises(ConfigurationError, match="cannot administer"):
            opened.admin()
    finally:
        opened.close()


def test_a_read_only_descriptor_writes_nothing(
    db: Database, make_tenant: Callable[..., str]
) -> None:
    tenant = make_tenant()
    with db.unit_of_work(tenant) as uow:
        uow.states.save("doc", {"n": 1})
    descriptor = db.access(tenant, ttl=600, read_only=True)
    assert descriptor.read_only
    opened = _open(db, descriptor)
    try:
        with opened.unit_of_work() as uow:
            assert uow.read_only and uow.states.load("doc").state == {"n": 1}
        with pytest.raises(ReadOnlyError), opened.unit_of_work() as uow:
            uow.states.save("doc", {"n": 2})
        with pytest.raises(ReadOnlyError), opened.unit_of_work(read_only=False) as uow:
            uow.states.save("other", {"n": 2})
    finally:
        opened.close()
    with db.unit_of_work(tenant) as uow:
        assert uow.states.load("doc").state == {"n": 1} and uow.states.load("other") is None
