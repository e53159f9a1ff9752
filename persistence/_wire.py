"""Statements sent to PostgreSQL straight through libpq, in pipeline mode: several
statements, one sync, their results read together in one round trip.

The first statement of a unit of work goes this way, with ``BEGIN`` and the tenant
entry before it (``persistence._executor.run_entering``). psycopg's own pipeline
(``Connection.pipeline()`` and cursors in it) does the same exchange with a result
machinery per statement that costs more client CPU than the whole round trip on a
local server; here parameters are dumped and rows loaded by psycopg's ``Transformer``
(its C adapters, the same conversions as a cursor's) and nothing else sits between
the statement and libpq.

Statements are prepared on the server once per connection, under names of their own
(``persistence_<n>``), keyed by SQL and parameter types (psycopg dumps an ``int`` as
``int2``, ``int4`` or ``int8`` by its size), and sent unnamed when the engine's
``prepared_statements`` setting is off (PgBouncer in transaction mode). psycopg itself
prepares nothing on these connections (``prepare_threshold=None``): it answers a
``ROLLBACK`` of its own by ``DEALLOCATE ALL`` once it has prepared anything, which would
drop ours too. A ``Parse`` is recorded only once the server answered it. On a connection whose
session was handed to the caller (``uow.session``, raw ``engine.connect()``: marked
dirty), statements go unnamed, since SQL of the caller's own may have deallocated them;
the checkin's reset deallocates every prepared statement and the registry starts over.
A name the server no longer knows anyway (or whose plan no longer fits, after a
migration changed a column) fails that statement and marks the connection dirty:
unnamed statements until the reset.
"""

from __future__ import annotations

import re
import select
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ConnStatus, ExecStatus, Format
from psycopg.waiting import Ready, Wait
from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from persistence._session_reset import DIRTY, PREPARED

__all__ = ["Batch", "closed_meanwhile", "exchange", "install", "numbered"]

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
_PREPARES = "persistence_prepares"  # the engine's prepared_statements setting
_LIMIT = 512  # statements prepared per connection; beyond, sent unnamed
_FATAL_ERROR = ExecStatus.FATAL_ERROR
_PIPELINE_SYNC = ExecStatus.PIPELINE_SYNC
_COMMAND_OK = ExecStatus.COMMAND_OK
_TUPLES_OK = ExecStatus.TUPLES_OK
_STALE_NAME = (b"26000", b"0A000")
_SQLSTATE = ord("C")  # PG_DIAG_SQLSTATE
_AUTO: dict[int, list[PyFormat]] = {}
_OK = ConnStatus.OK


def numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` in psycopg's named style (``%(name)s``, ``%%``) as libpq's numbered one
    (``$1``; a name used twice is one number), and the names in number order."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${order.setdefault(name, len(order) + 1)}"

    text = _PLACEHOLDER.sub(number, sql)
    return text.encode(), tuple(order)


class _Registry:
    """The statements this library prepared on one connection, by (SQL, types)."""

    __slots__ = ("count", "driver", "enabled", "names")

    def __init__(self, driver: Any, enabled: bool) -> None:
        self.names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.driver = driver
        self.enabled = enabled
        self.count = 0


def _registry(info: dict[str, Any], driver: Any) -> _Registry:
    """The registry of ``driver``, kept in its pool entry's ``info`` (which can outlive
    a driver connection: a reconnected entry starts a registry of its own)."""
    found: _Registry | None = info.get(PREPARED)
    if found is None or found.driver is not driver:
        found = info[PREPARED] = _Registry(driver, info.get(_PREPARES, True))
    return found


def install(engine: Engine, prepares: bool) -> None:
    """Whether statements are prepared on ``engine``'s connections (the
    ``prepared_statements`` setting; psycopg itself is told to prepare nothing)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_PREPARES] = prepares


class _Message:
    """One statement, dumped and ready to send (nothing is sent while dumping, so a
    value the adapters refuse raises before the pipeline starts)."""

    __slots__ = ("binary", "formats", "key", "name", "prepare", "query", "values")

    def __init__(self, batch: Batch, query: bytes, values: Sequence[Any], binary: bool):
        tx, registry = batch.tx, batch.registry
        formats = _AUTO.get(len(values)) or _AUTO.setdefault(
            len(values), [PyFormat.AUTO] * len(values)
        )
        self.values = tx.dump_sequence(values, formats) if values else None
        types: tuple[int, ...] = tuple(tx.types or ()) if values else ()
        self.formats = list(tx.formats or ()) if values else None
        self.query, self.binary, self.key = query, binary, (query, types)
        prepares = registry.enabled and batch.trusted
        self.name = registry.names.get(self.key) if prepares else None
        self.prepare = self.name is None and prepares and len(registry.names) < _LIMIT
        if self.prepare:
            registry.count += 1
            self.name = b"persistence_%d" % registry.count


class Batch:
    """Statements for one pipeline on one psycopg connection: :meth:`add` them, then
    :meth:`send`, wait on :func:`exchange`, and :meth:`outcomes` gives one result per
    statement (its rows, or the error that stopped it, as a libpq result)."""

    __slots__ = ("driver", "info", "messages", "registry", "trusted", "tx")

    def __init__(self, driver: Any, info: dict[str, Any]) -> None:
        self.driver, self.info = driver, info
        # SQL of the caller's own may have run on a dirty connection (a DEALLOCATE ALL):
        # its statements go unnamed until the checkin's reset deallocates them all
        self.trusted = not info.get(DIRTY)
        self.tx = Transformer(driver)
        self.registry = _registry(info, driver)
        self.messages: list[_Message] = []

    def add(self, query: bytes, values: Sequence[Any] = (), *, binary: bool = False) -> None:
        self.messages.append(_Message(self, query, values, binary))

    def add_named(
        self, wire: tuple[bytes, tuple[str, ...]], args: Mapping[str, Any], binary: bool
    ) -> None:
        """A statement in :func:`numbered` form with its named arguments."""
        query, order = wire
        self.add(query, [args[name] for name in order], binary=binary)

    def send(self) -> None:
        """Queue every statement and the sync in libpq (pipeline mode on): nothing waits
        here; :func:`exchange` flushes and reads."""
        pgconn = self.driver.pgconn
        pgconn.enter_pipeline_mode()
        for message in self.messages:
            result_format = Format.BINARY if message.binary else Format.TEXT
            if message.prepare:
                types = message.key[1] or None
                pgconn.send_prepare(message.name, message.query, param_types=types)
            if message.name is not None:
                pgconn.send_query_prepared(
                    message.name,
                    message.values,
                    param_formats=message.formats,
                    result_format=result_format,
                )
            else:
                pgconn.send_query_params(
                    message.query,
                    message.values,
                    param_types=message.key[1] or None,
                    param_formats=message.formats,
                    result_format=result_format,
                )
        pgconn.pipeline_sync()

    def outcomes(self, results: list[Any]) -> list[Any]:
        """One libpq result per statement, from every result of the round trip (with
        the prepares'); pipeline mode off again. A statement whose prepare failed gets
        the prepare's error."""
        self.driver.pgconn.exit_pipeline_mode()
        registry, out, index = self.registry, [], 0
        for message in self.messages:
            if message.prepare:
                prepared = results[index]
                index += 1
                if prepared.status == _COMMAND_OK:
                    registry.names[message.key] = message.name  # type: ignore[assignment]
                elif prepared.status == _FATAL_ERROR:
                    out.append(prepared)
                    index += 1
                    continue
            result = results[index]
            index += 1
            if result.status == _FATAL_ERROR and message.name and _stale_name(result):
                # dropped or outdated on the server: nothing named until the checkin's
                # reset deallocates every statement and the registry starts over
                self.info[DIRTY] = True
            out.append(result)
        return out

    def error(self, result: Any) -> psycopg.Error:
        """The psycopg error a ``FATAL_ERROR`` result carries."""
        return psycopg.errors.error_from_result(result, encoding=self.driver.info.encoding)

    def rows(self, result: Any) -> list[Any]:
        """A statement's rows, as tuples (a cursor's default rows; none for a command).
        Raises the psycopg error of a result that is neither (the statement's own, or
        its prepare's), or of a value the adapters cannot load."""
        status = result.status
        if status == _COMMAND_OK:
            return []
        if status != _TUPLES_OK:
            raise self.error(result)
        tx = self.tx
        tx.set_pgresult(result)
        return tx.load_rows(0, result.ntuples, tuple)


def _stale_name(result: Any) -> bool:
    """A prepared statement the server no longer knows (26000), or whose plan no longer
    fits its tables (0A000, "cached plan must not change result type")."""
    return result.error_field(_SQLSTATE) in _STALE_NAME


def exchange(pgconn: Any) -> Generator[Wait, Ready, list[Any]]:
    """Flush what :meth:`Batch.send` queued and read every result up to the sync (for
    ``Connection.wait``, sync or async: the one round trip of the batch)."""
    while pgconn.flush():
        ready = yield Wait.RW
        if ready & Ready.R:
            pgconn.consume_input()
    results: list[Any] = []
    while True:
        while pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            continue
        if result.status == _PIPELINE_SYNC:
            return results
        results.append(result)


def closed_meanwhile(pgconn: Any) -> bool:
    """Whether the server closed, or is closing, this idle connection while it sat in
    the pool: anything waiting on its socket says so (the error of
    ``pg_terminate_backend`` or a shutdown, then the end of the stream; the library never
    listens for notifications, so nothing else is expected). No round trip: one
    ``select`` with no wait. A connection the network lost silently shows nothing here
    (its next round trip fails or times out)."""
    if pgconn.status != _OK:
        return True
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
