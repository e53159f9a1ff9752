"""Settings: defaults, environment variables, validation and masked secrets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from persistence import Database, Settings
from persistence.errors import ConfigurationError
from persistence.settings import DEFAULT_SQLITE_PATH, mask_url

SECRET_URL = "postgresql+psycopg://app:hunter2@db.example:5432/prod"


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PERSISTENCE_"):
            monkeypatch.delenv(name)


def test_default_is_the_embedded_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    settings = Settings()
    assert settings.database_url == f"sqlite:///{DEFAULT_SQLITE_PATH.expanduser()}"
    assert settings.database_url.startswith("sqlite:////home/someone/")
    assert settings.owner_database_url is None and settings.redis_url is None
    assert not settings.is_postgres


def test_environment_variables_are_read_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTENCE_DATABASE_URL", SECRET_URL)
    monkeypatch.setenv("PERSISTENCE_POOL_SIZE", "3")
    monkeypatch.setenv("PERSISTENCE_STATEMENT_TIMEOUT_MS", "500")
    settings = Settings()
    assert settings.database_url == SECRET_URL and settings.is_postgres
    assert (settings.pool_size, settings.statement_timeout_ms) == (3, 500)


def test_isolation_settings_default_to_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.allow_rls_bypass is False  # roles RLS does not bind are refused
    assert settings.idle_in_transaction_timeout_ms == 60_000
    monkeypatch.setenv("PERSISTENCE_ALLOW_RLS_BYPASS", "true")
    monkeypatch.setenv("PERSISTENCE_IDLE_IN_TRANSACTION_TIMEOUT_MS", "0")
    opted_in = Settings()
    assert (opted_in.allow_rls_bypass, opted_in.idle_in_transaction_timeout_ms) == (True, 0)
    with pytest.raises(ValidationError):
        Settings(idle_in_transaction_timeout_ms=-1)


def test_only_an_owner_url_is_the_runtime_url_too(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(owner_database_url=SECRET_URL).database_url == SECRET_URL
    monkeypatch.setenv("PERSISTENCE_OWNER_DATABASE_URL", SECRET_URL)
    assert Settings().database_url == SECRET_URL  # an operator's shell: administration
    runtime = "postgresql+psycopg://app@db.example:5432/prod"
    monkeypatch.setenv("PERSISTENCE_DATABASE_URL", runtime)
    assert (Settings().database_url, Settings().owner_database_url) == (runtime, SECRET_URL)


@pytest.mark.parametrize(
    "field, value",
    [("pool_size", 0), ("max_overflow", -1), ("connect_timeout", 0), ("database_url", " ")],
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_unknown_fields_are_refused_and_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings(databse_url="sqlite://")  # type: ignore[call-arg]
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.pool_size = 9  # type: ignore[misc]


def test_passwords_are_masked_in_repr_str_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        database_url=SECRET_URL,
        owner_database_url="postgresql://owner:s3cret@db/prod",
        redis_url="redis://:r3dis@cache:6379/0",
    )
    logging.getLogger("test").warning("configured %s / %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text, repr(Database(settings))):
        assert "hunter2" not in text and "s3cret" not in text and "r3dis" not in text
        assert "***" in text


def test_mask_url() -> None:
    assert mask_url(SECRET_URL) == "postgresql+psycopg://app:***@db.example:5432/prod"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url(None) is None
    assert mask_url("::not a url::") == "<unparseable url>"


def test_database_refuses_unsupported_or_mixed_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unsupported") as info:
        Database.from_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="same database"):
        Database.from_url(f"sqlite:///{tmp_path}/a.db", owner_url=SECRET_URL)
    with pytest.raises(ConfigurationError, match="invalid database URL"):
        Database.from_url("::nope::")


def test_nothing_connects_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "lazy.sqlite3"
    db = Database.from_url(f"sqlite:///{path}")
    assert not path.exists()
    with db:
        db.migrate()
        assert path.exists()


def test_url_label_names_the_setting_and_masks_the_password() -> None:
    runtime = Settings(database_url=SECRET_URL)
    assert runtime.url_label() == (
        "database_url (PERSISTENCE_DATABASE_URL) "
        "'postgresql+psycopg://app:***@db.example:5432/prod'"
    )
    assert runtime.url_label(owner=True) == runtime.url_label()  # no owner URL: the same one
    owner = Settings(database_url=SECRET_URL, owner_database_url=SECRET_URL.replace("app", "own"))
    label = owner.url_label(owner=True)
    assert label.startswith("owner_database_url (PERSISTENCE_OWNER_DATABASE_URL) ")
    assert "own:***@" in label and "hunter2" not in label
