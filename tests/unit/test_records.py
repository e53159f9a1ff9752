"""Records built by Record.of are the records model_construct and validation build."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from persistence.records.states import StateVersion

VALUES = dict(
    state_id="plan",
    version=2,
    parent_version=1,
    created_at=datetime(2026, 12, 1, tzinfo=UTC),
    expires_at=None,
    raw_size=10,
    stored_size=8,
    codec="zstd",
    checksum="ab" * 32,
    tags=("a", "b"),
    metadata={"k": [1, 2]},
)


def test_of_builds_the_same_record_as_validation() -> None:
    fast = StateVersion.of(**VALUES)
    assert fast == StateVersion(**VALUES) == StateVersion.model_construct(**VALUES)
    assert fast.model_dump() == VALUES
    assert fast.model_fields_set == set(VALUES)
    assert fast.model_copy(update={"version": 3}).version == 3
    assert repr(fast) == repr(StateVersion(**VALUES))


def test_records_built_by_of_are_frozen() -> None:
    fast = StateVersion.of(**VALUES)
    with pytest.raises(ValidationError):
        fast.version = 3  # type: ignore[misc]


def test_from_row_reads_fields_by_name_and_takes_overrides() -> None:
    from types import SimpleNamespace

    row = SimpleNamespace(**dict(VALUES, tags=["a", "b"], extra_column=1))
    record = StateVersion.from_row(row, tags=tuple(row.tags))
    assert record == StateVersion(**VALUES)
    with pytest.raises(AttributeError):
        StateVersion.from_row(SimpleNamespace(state_id="x"))  # a missing column is an error
