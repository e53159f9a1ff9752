"""LangGraph checkpoints of one workspace, inside the transaction of the scope given:
rows in and rows out (the saver turns them into LangGraph's types); nothing commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from persistence._pg_arrays import text_array
from persistence.cache import Entry
from persistence.errors import AlreadyExistsError, DataCorruptionError, StaleFenceError
from persistence.langgraph import _maintenance as maintenance
from persistence.langgraph._batches import blob_arrays, channel_arrays, write_arrays
from persistence.langgraph._latest_sql import LATEST_PG, split
from persistence.langgraph._pruning import Chain
from persistence.langgraph._serial import Blob, Row, WriteRow
from persistence.langgraph._statements import (
    BLOBS,
    BLOBS_PG,
    BUMP,
    CHANNELS,
    CHECKPOINTS,
    CLAIM,
    GET_LATEST,
    GET_ONE,
    HEAD,
    PUT_BLOB,
    PUT_CHANNEL,
    PUT_CHECKPOINT,
    PUT_PG,
    THREADS,
    WRITE_KEEP,
    WRITE_REPLACE,
    WRITES,
    WRITES_KEEP_PG,
    WRITES_OF_PG,
    WRITES_REPLACE_PG,
    blobs_of,
    in_thread,
    writes_of,
)
from persistence.langgraph._stored import LATEST, Stored, latest_key, pack, unpack
from persistence.models.base import utcnow
from persistence.repositories._base_async import AsyncScope

__all__ = ["AsyncCheckpointRepository"]

TABLES = (WRITES, CHANNELS, BLOBS, CHECKPOINTS, THREADS)


class AsyncCheckpointRepository:
    def __init__(self, scope: AsyncScope):
        self._scope = scope

    def _params(self, thread_id: str, ns: str | None = None, **more: Any) -> dict[str, Any]:
        scope = self._scope
        params: dict[str, Any] = {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id}
        params["thread_id"] = thread_id
        if ns is not None:
            params["checkpoint_ns"] = ns
        params.update(more)
        return params

    # -- reads ------------------------------------------------------------------------

    def _renamed(self, thread_id: str, ns: str) -> dict[str, Any]:
        """The parameters of ``in_thread_renamed`` (statements that UPDATE)."""
        scope = self._scope
        return {"t_id": scope.tenant_id, "w_id": scope.workspace_id, "th_id": thread_id, "ns": ns}

    async def get(self, thread_id: str, ns: str, checkpoint_id: str) -> Any:
        """The row of one checkpoint, or None."""
        params = self._params(thread_id, ns, checkpoint_id=checkpoint_id)
        return await self._scope.run_one(GET_ONE, params)

    async def latest(
        self, thread_id: str, ns: str, *, cached: bool = True
    ) -> tuple[Stored | None, bool]:
        """The namespace's latest checkpoint with its blobs and writes (None if it has
        none), through the read cache where it applies (versioned by the thread row's
        fence), and whether it came from the cache: its payloads are verified when
        decoded, and one that fails is :meth:`discard_latest`-ed and read again.
        PostgreSQL: read from the database, it is the unit of work's last statement
        (its COMMIT goes with it): nothing more may run in the unit of work."""
        scope = self._scope
        key = latest_key(scope.workspace_id, thread_id, ns)
        cache = scope.cache_for(key) if cached else None
        if cache is None:
            return (await self._read_latest(thread_id, ns))[0], False
        entry, ticket = await cache.get(scope.tenant_id, LATEST, key)
        if entry is not None:
            try:
                return unpack(entry.value), True
            except DataCorruptionError:
                await cache.discard(scope.tenant_id, key)
        stored, fence = await self._read_latest(thread_id, ns)
        if stored is not None and fence is not None:  # (the cache's call: no SQL)
            await cache.fill(scope.tenant_id, LATEST, key, Entry(fence, pack(stored)), ticket)
        return stored, False

    async def _read_latest(self, thread_id: str, ns: str) -> tuple[Stored | None, int | None]:
        """The latest checkpoint from the database, and its (thread, namespace)'s fence."""
        scope = self._scope
        params = self._params(thread_id, ns)
        if scope.is_postgres:  # (one round trip, with the unit of work's COMMIT)
            return split(await scope.run(LATEST_PG, params, last=True), thread_id, ns)
        row = await scope.run_one(GET_LATEST, params)
        if row is None:
            return None, None
        return await self.stored([row]), row.fence

    async def discard_latest(self, thread_id: str, ns: str) -> None:
        """Drop the cached latest checkpoint of the namespace (it failed a checksum)."""
        cache = self._scope.cache
        if cache is not None:
            key = latest_key(self._scope.workspace_id, thread_id, ns)
            await cache.discard(self._scope.tenant_id, key)

    async def stored(self, rows: Sequence[Any]) -> Stored:
        """``rows`` with the blobs of every channel version they name and their pending
        writes: two statements for all of them."""
        keys = [
            (r.thread_id, r.checkpoint_ns, channel, str(version))
            for r in rows
            for channel, version in orjson.loads(r.versions).items()
        ]
        ids = [(r.thread_id, r.checkpoint_ns, r.checkpoint_id) for r in rows]
        blobs = await self.blobs(keys)
        return Stored(rows, blobs, await self.writes(ids))

    async def blobs(self, keys: list[tuple[str, str, str, str]]) -> list[Any]:
        """Blob rows of (thread, namespace, channel, version) keys."""
        if not keys:
            return []
        threads = {(thread, ns) for thread, ns, _, _ in keys}
        if self._scope.is_postgres and len(threads) == 1:
            ((thread, ns),) = threads
            params = self._params(thread, ns)
            params["channels"] = text_array([channel for _, _, channel, _ in keys])
            params["versions"] = text_array([version for _, _, _, version in keys])
            return await self._scope.run(BLOBS_PG, params)
        return await self._scope.execute(blobs_of(keys), self._scope_params())

    async def writes(self, keys: list[tuple[str, str, str]]) -> list[Any]:
        """Pending write rows of (thread, namespace, checkpoint id) keys, in apply order."""
        if not keys:
            return []
        threads = {(thread, ns) for thread, ns, _ in keys}
        if self._scope.is_postgres and len(threads) == 1:
            ((thread, ns),) = threads
            ids = text_array([checkpoint for _, _, checkpoint in keys])
            params = self._params(thread, ns, ids=ids)
            return await self._scope.run(WRITES_OF_PG, params)
        return await self._scope.execute(writes_of(keys), self._scope_params())

    def _scope_params(self) -> dict[str, Any]:
        return {"tenant_id": self._scope.tenant_id, "workspace_id": self._scope.workspace_id}

    async def of_runs(self, run_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(thread, namespace, id) of the checkpoints the runs wrote."""
        c = CHECKPOINTS.c
        query = select(c.thread_id, c.checkpoint_ns, c.checkpoint_id).where(
            c.tenant_id == self._scope.tenant_id,
            c.workspace_id == self._scope.workspace_id,
            c.run_id.in_(list(run_ids)),
        )
        return [
            (r.thread_id, r.checkpoint_ns, r.checkpoint_id)
            for r in await self._scope.execute(query)
        ]

    async def count_checkpoints(self, thread_ids: Sequence[str]) -> int:
        c = CHECKPOINTS.c
        query = select(func.count()).where(
            c.tenant_id == self._scope.tenant_id,
            c.workspace_id == self._scope.workspace_id,
            c.thread_id.in_(list(thread_ids)),
        )
        return int((await self._scope.execute(query))[0][0])

    async def chain(self, thread_id: str, ns: str) -> Chain:
        """Every checkpoint of one namespace, and which channel versions hold a value."""
        params = self._params(thread_id, ns)
        rows = await self._scope.execute(maintenance.chain_rows(), params)
        valued = await self._scope.execute(maintenance.valued_channels(), params)
        return Chain(rows, {(r.channel, r.version) for r in valued})

    async def search(self, query: Any) -> list[Any]:
        """Checkpoint rows of a query built by :func:`persistence.langgraph._listing.query`."""
        return await self._scope.execute(query, self._scope_params())

    # -- writes -----------------------------------------------------------------------

    async def put(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        parent_id: str | None,
        row: Row,
        metadata: dict[str, Any],
        *,
        fenced: bool,
        holder: str,
    ) -> None:
        """Write one checkpoint, its new channel versions and their blobs. ``fenced``: only
        as the continuation of the namespace's head, else StaleFenceError (nothing written).
        PostgreSQL: one statement; SQLite: one per row."""
        scope = self._scope
        scope.require_writable("put")
        now = utcnow()
        params = self._params(
            thread_id,
            ns,
            checkpoint_id=checkpoint_id,
            parent_key=parent_id or "",
            unfenced=not fenced,
            holder=holder,
            now=now,
            parent_id=parent_id,
            run_id=_run_id(metadata),
            type=row.type,
            payload=row.payload,
            codec=row.codec,
            checksum=row.checksum,
            versions=orjson.dumps(row.versions).decode(),
            metadata=orjson.dumps(metadata).decode(),
        )
        channels = [
            (c, str(row.versions[c]), d) for c, d in row.channels.items() if c in row.versions
        ]
        if scope.is_postgres:
            params |= blob_arrays(row.blobs.values()) | channel_arrays(channels)
            # (one statement, and the unit of work's COMMIT with it: the fenced claim
            # writes nothing for a scope gone meanwhile, RLS and foreign keys refuse it)
            written = await scope.run_one(PUT_PG, params, last=True)
            head = None if written.fence is not None else written.head
        else:
            written = await self._put_rows(params, row, channels)
            head = None
            if written is None:
                head = await scope.run_scalar(HEAD, self._params(thread_id, ns))
        if written is None or written.fence is None:
            raise StaleFenceError(
                f"thread {thread_id!r}{_ns(ns)} moved on: its head is checkpoint {head!r}, not "
                f"{parent_id!r}, which this put continues (another writer resumed the thread); "
                "nothing was written"
            )
        self._changed(thread_id, ns, written.fence)

    def _changed(self, thread_id: str, ns: str, fence: int) -> None:
        """After commit, no cached latest checkpoint of the namespace below ``fence``."""
        key = latest_key(self._scope.workspace_id, thread_id, ns)
        self._scope.cache_written(LATEST, key, None, fence)

    async def _put_rows(
        self, params: dict[str, Any], row: Row, channels: list[tuple[str, str, bytes | None]]
    ) -> Any:
        scope = self._scope
        claimed = await scope.run_one(CLAIM, params)
        if claimed is None:
            return None
        for b in row.blobs.values():
            blob = {"digest": b.digest, "type": b.type, "codec": b.codec, "value": b.value}
            await scope.run(PUT_BLOB, {**params, **blob})
        for channel, version, digest in channels:
            value = {"channel": channel, "version": version, "digest": digest}
            await scope.run(PUT_CHANNEL, {**params, **value})
        await scope.run(PUT_CHECKPOINT, {**params, "created_at": params["now"]})
        return claimed

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        rows: Sequence[WriteRow],
        blobs: Mapping[bytes, Blob],
    ) -> None:
        """Store a task's writes (a large value as one of ``blobs``): a regular write
        (index >= 0) already stored is kept as it is (a retry writes the same); a special
        one replaces the stored one."""
        self._scope.require_writable("put_writes")
        if not rows:
            return
        replace = all(w.idx < 0 for w in rows)
        base = self._params(thread_id, ns, checkpoint_id=checkpoint_id)
        if self._scope.is_postgres:
            params = base | write_arrays(rows, blobs.values())
            statement = WRITES_REPLACE_PG if replace else WRITES_KEEP_PG
            fence = await self._scope.run_scalar(statement, params, last=True)
            if fence is not None:
                self._changed(thread_id, ns, fence)
            return
        fence = await self._scope.run_scalar(BUMP, self._renamed(thread_id, ns))
        if fence is not None:
            self._changed(thread_id, ns, fence)
        for b in blobs.values():
            blob = {"digest": b.digest, "type": b.type, "codec": b.codec, "value": b.value}
            await self._scope.run(PUT_BLOB, {**base, **blob})
        statement = WRITE_REPLACE if replace else WRITE_KEEP
        for w in rows:
            value = {
                "task_id": w.task_id,
                "idx": w.idx,
                "channel": w.channel,
                "type": w.type,
                "value": w.value,
                "codec": w.codec,
                "checksum": w.checksum,
                "task_path": w.task_path,
                "digest": w.digest,
            }
            await self._scope.run(statement, {**base, **value})

    async def delete_threads(self, thread_ids: Iterable[str]) -> None:
        """Delete every checkpoint, write, channel and blob of the threads."""
        self._scope.require_writable("delete_thread")
        ids = list(thread_ids)
        if not ids:
            return
        self._scope.cache_tenant_changed()  # (rare and wide: no key per namespace here)
        for table in TABLES:
            c = table.c
            await self._scope.execute(
                delete(table).where(
                    c.tenant_id == self._scope.tenant_id,
                    c.workspace_id == self._scope.workspace_id,
                    c.thread_id.in_(ids),
                )
            )

    async def lock_threads(self, thread_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Lock the (thread, namespace) rows of the threads until the transaction ends, so
        no put of theirs runs meanwhile (PostgreSQL; SQLite has one writer); their keys."""
        t = THREADS.c
        query = select(t.thread_id, t.checkpoint_ns).where(
            t.tenant_id == self._scope.tenant_id,
            t.workspace_id == self._scope.workspace_id,
            t.thread_id.in_(list(thread_ids)),
        )
        if self._scope.is_postgres:
            query = query.with_for_update()
        return [(r.thread_id, r.checkpoint_ns) for r in await self._scope.execute(query)]

    async def delete_checkpoints(self, thread_id: str, ns: str, ids: Sequence[str]) -> None:
        """Delete checkpoints of one namespace with their writes, then the channel versions
        no remaining checkpoint refers to and the blobs no channel version refers to; the
        namespace's head becomes its newest remaining checkpoint."""
        if not ids:
            return
        scope = self._scope
        scope.cache_tenant_changed()
        for table in (WRITES, CHECKPOINTS):
            await scope.execute(
                delete(table).where(in_thread(table), table.c.checkpoint_id.in_(list(ids))),
                self._params(thread_id, ns),
            )
        for statement in maintenance.orphans(scope.dialect):
            await scope.execute(statement, self._params(thread_id, ns))
        # the head goes back to the newest checkpoint left (none: the namespace starts
        # again): a head naming a deleted checkpoint would refuse every resume
        await scope.execute(maintenance.reset_head(), self._renamed(thread_id, ns))

    async def copy(self, source: str, target: str) -> None:
        """Copy every row of thread ``source`` to thread ``target`` (which must be empty)."""
        self._scope.require_writable("copy_thread")
        params = {**self._scope_params(), "source": source, "target": target}
        found = await self._scope.execute(
            maintenance.any_checkpoint(), {**params, "thread": target}
        )
        if found:
            raise AlreadyExistsError(f"thread {target!r} already has checkpoints")
        for table in (THREADS, CHECKPOINTS, CHANNELS, BLOBS, WRITES):
            await self._scope.execute(maintenance.copy_rows(table), params)


def _run_id(metadata: dict[str, Any]) -> str | None:
    run_id = metadata.get("run_id")
    return None if run_id is None else str(run_id)


def _ns(ns: str) -> str:
    return f" (namespace {ns!r})" if ns else ""
