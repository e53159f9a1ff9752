"""A SQLAlchemy Core statement compiled once per dialect: what :mod:`persistence._executor`
(and its async twin) needs to run it on a driver connection.

On first use per dialect a :class:`Statement` is compiled and what its execution needs
is kept: the SQL text, the order of its parameters (SQLite's ``?``), the bind
processors of the parameters whose type converts them (``UTCDateTime`` refusing a naive
timestamp, ``Uuid`` on SQLite, ``JSON``), the literal values the statement carries, and
the result columns by name with their result processors. Rows come back as named tuples
(``row.version``), mapped by column name, never by position.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from persistence._wire import numbered
from persistence.errors import InvalidInputError

__all__ = ["Row", "Statement", "arguments", "rows"]

Row = Any  # a named tuple of the statement's result columns
_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What running one statement on one dialect needs, worked out once."""

    sql: str
    positional: tuple[str, ...] | None  # parameter order for "?" (SQLite)
    defaults: Mapping[str, Any]  # values the statement itself carries (literals)
    processors: tuple[tuple[str, _Processor], ...]  # parameters whose type converts them
    row: Callable[[Any], Row] | None  # builds a named tuple; None: no result columns
    results: tuple[tuple[int, _Processor], ...]  # result columns whose type converts them
    binary: bool  # PostgreSQL: results in binary format (bytea without hex text)
    wire: tuple[bytes, tuple[str, ...]] | None  # PostgreSQL: $n SQL and names, for libpq


class Statement:
    """A Core statement (``select``, ``insert``, ``update``, ``delete``, a CTE ...) to be
    run by :func:`run`; compiled on first use per dialect. ``binary=True`` asks
    PostgreSQL for its results in binary format: a ``bytea`` column then comes as its
    bytes rather than as hex text twice their size to encode and decode."""

    __slots__ = ("_compiled", "binary", "clause", "name")

    def __init__(self, clause: ClauseElement, name: str, *, binary: bool = False):
        self.clause = clause
        self.name = name
        self.binary = binary
        self._compiled: dict[str, _Compiled] = {}

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self, dialect)
        return found

    def sql(self, dialect: Dialect) -> str:
        """The SQL this statement sends on ``dialect`` (what the tests compare with)."""
        return self.compiled(dialect).sql


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    compiled: Any = statement.clause.compile(dialect=dialect)
    binds = compiled.binds
    defaults: dict[str, Any] = {}
    processors: list[tuple[str, _Processor]] = []
    for name, bind in binds.items():
        if bind.expanding:  # its SQL depends on the list's length: not compiled once
            raise RuntimeError(f"{statement!r}: an IN-list parameter; run it with execute()")
        if bind.value is not None or not bind.required:
            defaults[name] = bind.effective_value
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((name, processor))
    columns = list(getattr(statement.clause, "exported_columns", ()))
    if getattr(statement.clause, "_returning", None) == () and not _selects(statement.clause):
        columns = []
    # an unlabeled expression has no key: name it by position (run_scalar reads it so)
    keys = [column.key or f"column{index}" for index, column in enumerate(columns)]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"{statement!r}: result columns share a name: {keys}")
    results = []
    for index, column in enumerate(columns):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if processor is not None:
            results.append((index, processor))
    row_type: Any = namedtuple(f"{statement.name}_row", keys) if keys else None
    row = row_type._make if row_type is not None else None
    positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return _Compiled(
        sql=compiled.string,
        positional=positional,
        defaults=defaults,
        processors=tuple(processors),
        row=row,
        results=tuple(results),
        binary=statement.binary,
        wire=numbered(compiled.string) if dialect.name == "postgresql" else None,
    )


def _selects(clause: Any) -> bool:
    return hasattr(clause, "selected_columns")


def arguments(
    statement: Statement, dialect: Dialect, params: Mapping[str, Any]
) -> tuple[_Compiled, Any]:
    """The compiled statement and the driver's arguments for ``params``: a dict (named
    parameters, psycopg) or a tuple (``?``, SQLite), each value through its type's bind
    processor. A value the type refuses (a naive timestamp) is InvalidInputError."""
    compiled = statement.compiled(dialect)
    values = dict(compiled.defaults, **params) if compiled.defaults else dict(params)
    try:
        for name, processor in compiled.processors:
            values[name] = processor(values[name])
    except (TypeError, ValueError) as exc:  # a column type refused the value (a naive time)
        raise InvalidInputError(f"{statement.name}: {exc}") from exc
    if compiled.positional is not None:
        return compiled, tuple([values[name] for name in compiled.positional])
    return compiled, values


def rows(compiled: _Compiled, raw: list[Any]) -> list[Row]:
    """The driver's rows as named tuples, each value through its column's processor."""
    make = compiled.row
    if make is None:
        return []
    if not compiled.results:
        return [make(values) for values in raw]
    out = []
    for values in raw:
        values = list(values)
        for index, processor in compiled.results:
            values[index] = processor(values[index])
        out.append(make(values))
    return out
