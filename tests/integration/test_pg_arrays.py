"""The binary arrays the LangGraph statements pass (``persistence._pg_arrays``): what the
server reads from them is what was given, and bad items are refused before sending."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from persistence._pg_arrays import bigint_array, bytea_array, text_array
from persistence.errors import InvalidInputError
from tests.fixtures.services import PostgresTarget


@pytest.fixture(scope="module")
def runtime(postgres: PostgresTarget) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres.psycopg_url("runtime")) as conn:
        yield conn


def _read(conn: psycopg.Connection, cast: str, value: object) -> object:
    row = conn.execute(
        f"SELECT CAST(%s AS {cast}), cardinality(CAST(%s AS {cast}))", [value, value]
    )
    found = row.fetchone()
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("build", "cast", "items"),
    [
        (bytea_array, "bytea[]", [b"\x00\xff", b"", None, b"x" * 70_000]),
        (text_array, "text[]", ["plain", "", None, "é€😀", "x" * 10_000]),
        (bigint_array, "bigint[]", [0, -1, None, 2**63 - 1, -(2**63)]),
        (bigint_array, "integer[]", [-3, -2, 0, 7]),  # (what put_writes' indexes are cast to)
        (bytea_array, "bytea[]", []),
        (text_array, "text[]", []),
        (bigint_array, "bigint[]", []),
    ],
)
def test_the_server_reads_back_exactly_the_items(
    runtime: psycopg.Connection, build: object, cast: str, items: list[object]
) -> None:
    assert callable(build)
    value, length = _read(runtime, cast, build(items))  # type: ignore[misc]
    assert value == items
    assert length == len(items)


@pytest.mark.parametrize(
    ("build", "items", "message"),
    [
        (bytea_array, [b"ok", "text"], "must be bytes, not str"),
        (bytea_array, [bytearray(b"x")], "must be bytes, not bytearray"),
        (bytea_array, [5], "must be bytes, not int"),  # (bytes(5) would be five NULs)
        (text_array, ["ok", b"raw"], "must be a str, not bytes"),
        (text_array, ["a\x00b"], "NUL"),
        (text_array, ["\ud800"], "lone surrogate"),
        (bigint_array, [1, "2"], "must be an int"),
        (bigint_array, [True], "must be an int"),
        (bigint_array, [2**63], "must be an int"),
        (bigint_array, [1.0], "must be an int"),
    ],
)
def test_a_bad_item_is_refused_before_anything_is_sent(
    build: object, items: list[object], message: str
) -> None:
    assert callable(build)
    with pytest.raises(InvalidInputError, match=message):
        build(items)
