"""Scope signing keys: a service signs with the key it is given, the database verifies
with the keys it holds, and rotation (add, switch the services, retire) refuses every
token of a retired key, access descriptors included, from the moment it is retired."""

from __future__ import annotations

import pytest

from persistence import Database
from persistence.errors import ConfigurationError, NotFoundError, ScopeTokenError
from persistence.scopes import ScopeKey
from tests.conftest import new_tenant
from tests.fixtures.services import PostgresTarget
from tests.integration import test_cli
from tests.integration.test_cli import Cli

invoke = test_cli.invoke  # (the fixture)


def _service(postgres: PostgresTarget, key: str | None) -> Database:
    """A service's Database: the runtime URL only, and the key it signs with."""
    return Database.from_url(postgres.runtime_url, scope_key=key)


def _descriptor_works(descriptor: object, tenant: str) -> bool:
    with Database.from_access(descriptor) as db:  # type: ignore[arg-type]
        return _works(db, tenant)


def _works(db: Database, tenant: str) -> bool:
    with db.unit_of_work(tenant) as uow:
        uow.states.save("rotation", {"ok": True})
    return True


def test_key_rotation_end_to_end(
    postgres: PostgresTarget,
    invoke: Cli,
    pg_db: Database,
) -> None:
    tenant = new_tenant(pg_db)
    owner = ("--owner-url", postgres.owner_url)
    added = invoke(*owner, "--json", "db", "scope-key", "add", "rot-1").json()
    assert added["id"] == "rot-1" and ScopeKey.parse(added["scope_key"]).id == "rot-1"
    listed = invoke(*owner, "--json", "db", "scope-key", "list").json()
    assert {"rot-1", "auto"} <= {k["id"] for k in listed}
    assert all("scope_key" not in k and "secret" not in str(k) for k in listed)  # never shown
    assert invoke(*owner, "db", "scope-key", "add", "rot-1").code != 0  # the id is taken

    old = _service(postgres, added["scope_key"])
    assert _works(old, tenant)
    descriptor = old.access(tenant, ttl=600)  # issued with rot-1
    assert _descriptor_works(descriptor, tenant)

    # Rotation: a new key, the services switched to it, the old one retired.
    new_key = invoke(*owner, "--json", "db", "scope-key", "add", "rot-2").json()["scope_key"]
    new = _service(postgres, new_key)
    assert _works(new, tenant) and _works(old, tenant)  # both verify until the retirement
    retired = invoke(*owner, "--json", "db", "scope-key", "retire", "rot-1").json()
    assert retired["id"] == "rot-1" and retired["retired_at"] is not None
    with pytest.raises(ScopeTokenError, match="signature is not valid"):
        _works(old, tenant)  # a service still signing with it: refused at once
    with pytest.raises(ScopeTokenError, match="signature is not valid"):
        _descriptor_works(descriptor, tenant)  # and what it issued
    assert _works(new, tenant)
    assert invoke(*owner, "db", "scope-key", "retire", "rot-1").code != 0  # retired once
    for db in (old, new):
        db.close()


def test_a_service_without_a_key_is_told_what_to_set(
    postgres: PostgresTarget, pg_db: Database
) -> None:
    tenant = new_tenant(pg_db)
    with _service(postgres, None) as db, pytest.raises(ConfigurationError, match="SCOPE_KEY"):
        _works(db, tenant)
    with pytest.raises(ConfigurationError, match="scope_key"):
        _service(postgres, "not-a-key")


def test_a_key_the_database_does_not_hold_signs_nothing(
    postgres: PostgresTarget, pg_db: Database
) -> None:
    tenant = new_tenant(pg_db)
    unknown = ScopeKey("rot-unknown", b"\x07" * 32).text()
    with _service(postgres, unknown) as db, pytest.raises(ScopeTokenError):
        _works(db, tenant)
    owner = Database.from_url(postgres.owner_url)
    with owner, pytest.raises(NotFoundError), owner.admin() as admin:
        admin.scope_keys.retire("rot-unknown")
