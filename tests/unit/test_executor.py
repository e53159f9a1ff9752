"""Statements compile once per dialect; one whose SQL depends on its arguments is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, column, select, table
from sqlalchemy.dialects import sqlite

from persistence._executor import Statement

ITEMS = table("items", column("id"), column("name"))


def test_a_statement_compiles_once_per_dialect() -> None:
    statement = Statement(select(ITEMS.c.name).where(ITEMS.c.id == bindparam("id")), "one")
    dialect = sqlite.dialect()
    assert statement.compiled(dialect) is statement.compiled(dialect)
    assert statement.sql(dialect) == "SELECT items.name \nFROM items \nWHERE items.id = ?"


def test_an_in_list_parameter_cannot_be_compiled_once() -> None:
    statement = Statement(select(ITEMS.c.name).where(ITEMS.c.id.in_([1, 2])), "many")
    with pytest.raises(RuntimeError, match="IN-list"):
        statement.compiled(sqlite.dialect())
