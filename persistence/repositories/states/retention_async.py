"""Statistics, expiry purge and version-exact import/export of the state repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, exists, func, insert, literal, or_, select, tuple_

from persistence.codecs import checksum, compress, dump_json, validate_codec
from persistence.errors import ConflictError, InvalidInputError
from persistence.models.base import UTCDateTime, utcnow
from persistence.records.states import LoadedState, StateStats, StateVersion
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import scoped, upsert
from persistence.repositories.states import inputs as q
from persistence.repositories.states import statements as sql
from persistence.repositories.states.checkpoints_async import decode_payload
from persistence.repositories.states.writer_async import AsyncStateWriter

__all__ = ["AsyncStateRetention"]


class AsyncStateRetention:
    """Statistics, expiry purge and version-exact export/import of one scope's states:
    work that is not on the per-request hot path."""

    def __init__(self, scope: AsyncScope, writer: AsyncStateWriter):
        self._scope = scope
        self._writer = writer
        self._key = {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id}

    async def _run(self, clause: Any, params: dict[str, Any] | None = None) -> list[Any]:
        return await self._scope.execute(clause, self._key if params is None else params)

    async def _first(self, clause: Any) -> Any:
        rows = await self._run(clause)
        return rows[0]

    # -- statistics -----------------------------------------------------------------

    async def stats(self) -> StateStats:
        """Counts and sizes of this workspace's states (expired ones included until purged)."""
        now = utcnow()
        ver, head = sql.VER.c, sql.HEAD.c
        versions, raw, stored = await self._first(
            select(
                func.count(),
                func.coalesce(func.sum(ver.raw_size), 0),
                func.coalesce(func.sum(ver.stored_size), 0),
            ).where(scoped(sql.VER))
        )
        live, dead = await self._first(
            select(
                func.coalesce(func.sum(case((sql.alive(sql.HEAD, now), 1), else_=0)), 0),
                func.coalesce(func.sum(case((sql.alive(sql.HEAD, now), 0), else_=1)), 0),
            ).where(scoped(sql.HEAD), head.latest_version.is_not(None))
        )
        per_state = (
            select(func.count().label("n")).where(scoped(sql.VER)).group_by(ver.state_id).subquery()
        )
        (widest,) = await self._first(select(func.max(per_state.c.n)))
        (checkpoints,) = await self._first(select(func.count()).where(scoped(sql.CKPT)))
        holders = int(live) + int(dead)
        return StateStats(
            states=int(live),
            expired_states=int(dead),
            versions=int(versions),
            checkpoints=int(checkpoints),
            raw_bytes=int(raw),
            stored_bytes=int(stored),
            compression_ratio=(int(raw) / int(stored)) if stored else None,
            versions_per_state=(int(versions) / holders) if holders else 0.0,
            max_versions_per_state=int(widest or 0),
        )

    # -- expiry ------------------------------------------------------------------------

    async def purge_expired(
        self, batch_size: int | None = None, *, max_batches: int | None = None
    ) -> int:
        """Delete expired states (every version, tag and checkpoint) and expired old
        versions of live states; return how many versions were deleted.

        Works in batches of ``batch_size`` rows (default ``settings.gc_batch_size``),
        never one statement for everything; ``max_batches`` bounds the work per call
        (call again until it returns 0). A purged state is gone entirely: saving its id
        again starts at version 1.
        """
        self._scope.require_writable("purge_expired")
        size = q.count(
            self._scope.settings.gc_batch_size if batch_size is None else batch_size,
            "batch_size",
            minimum=1,
        )
        budget = None if max_batches is None else q.count(max_batches, "max_batches", minimum=1)
        now, deleted = utcnow(), 0
        for step, counts in (
            (self._purge_versions_of_expired_states, True),
            (self._purge_expired_versions, True),
            (self._purge_expired_heads, False),
        ):
            while budget is None or budget > 0:
                done = await step(size, now)
                budget = None if budget is None else budget - 1
                deleted += done if counts else 0
                if done < size:
                    break
        return deleted

    _VERSION_KEY = (
        sql.VER.c.tenant_id,
        sql.VER.c.workspace_id,
        sql.VER.c.state_id,
        sql.VER.c.version,
    )

    async def _delete_versions(self, keys: Any) -> int:
        stmt = delete(sql.VER).where(tuple_(*self._VERSION_KEY).in_(keys))
        return len(await self._run(stmt.returning(sql.VER.c.version)))

    async def _purge_versions_of_expired_states(self, size: int, now: datetime) -> int:
        keys = (
            select(*self._VERSION_KEY)
            .select_from(sql.HEAD.join(sql.VER, sql.head_join_state()))
            .where(scoped(sql.HEAD), sql.HEAD.c.expires_at <= now)
            .limit(size)
        )
        return await self._delete_versions(keys)

    async def _purge_expired_versions(self, size: int, now: datetime) -> int:
        keys = (
            select(*self._VERSION_KEY)
            .where(scoped(sql.VER), sql.VER.c.expires_at <= now)
            .limit(size)
        )
        return await self._delete_versions(keys)

    async def _purge_expired_heads(self, size: int, now: datetime) -> int:
        """Drop the heads (and checkpoints) of expired states whose versions are gone."""
        head = sql.HEAD.c
        no_versions = ~exists().where(sql.head_join_state())
        ids = [
            row.state_id
            for row in await self._run(
                select(head.state_id)
                .where(scoped(sql.HEAD), head.expires_at <= now, no_versions)
                .order_by(head.state_id)
                .limit(size)
            )
        ]
        if ids:
            ckpt = sql.CKPT.c
            await self._run(delete(sql.CKPT).where(scoped(sql.CKPT), ckpt.state_id.in_(ids)))
            await self._run(
                delete(sql.HEAD).where(
                    scoped(sql.HEAD), head.state_id.in_(ids), head.expires_at <= now
                )
            )
        return len(ids)

    # -- export / import -----------------------------------------------------------------

    async def iter_all_versions(self, *, batch_size: int = 200) -> AsyncIterator[LoadedState]:
        """Every stored version of every state of the workspace, for export.

        Yields ``LoadedState(state, meta)`` ordered by state id, then version (oldest
        first per state), reading ``batch_size`` rows at a time (keyset, so memory stays
        bounded). Expired versions not yet purged are included; every payload is
        checksum-verified (DataCorruptionError otherwise). Feed each item to
        :meth:`import_version` to rebuild the history elsewhere.
        """
        size = q.count(batch_size, "batch_size", minimum=1, maximum=q.MAX_LIMIT)
        ver = sql.VER.c
        after: tuple[str, int] | None = None
        while True:
            stmt = (
                select(*sql.META_COLUMNS, ver.payload)
                .where(scoped(sql.VER))
                .order_by(ver.state_id, ver.version)
                .limit(size)
            )
            if after is not None:
                stmt = stmt.where(tuple_(ver.state_id, ver.version) > after)
            rows = await self._run(stmt)
            for row in rows:
                meta = q.version_record(row)
                yield LoadedState(decode_payload(meta, row.payload), meta)
            if len(rows) < size:
                return
            after = (rows[-1].state_id, rows[-1].version)

    async def import_version(self, meta: StateVersion, state: Any) -> bool:
        """Write exactly version ``meta.version`` of ``meta.state_id`` with ``meta``'s
        recorded metadata (created_at, parent, expiry, codec, tags, user metadata).

        Returns True when written, False (writing nothing at all) when an identical
        version (same checksum) exists; raises ConflictError when a different one exists and
        InvalidInputError when ``state`` does not match ``meta.checksum``/``raw_size``.
        The head's counter becomes max(counter, version), so later saves never reuse it.
        """
        self._scope.require_writable("import_version")
        sid = q.state_id(meta.state_id)
        version = q.count(meta.version, "version", minimum=1)
        depth = self._scope.settings.max_json_depth
        raw = dump_json(state, what=f"state {sid!r} version {version}", max_depth=depth)
        self._writer.check_size(len(raw), sid)
        if checksum(raw) != meta.checksum or len(raw) != meta.raw_size:
            raise InvalidInputError(
                f"state {sid!r} version {version}: the value does not match its recorded checksum"
            )
        payload = compress(raw, validate_codec(meta.codec))
        tags = q.tag_list(meta.tags)
        meta = meta.model_copy(
            update={
                "state_id": sid,
                "stored_size": len(payload),
                "tags": tags,
                "metadata": q.user_metadata(meta.metadata, self._scope.settings),
            }
        )
        if await self._existing(meta) is not None:  # identical: False; different: raises
            return False
        await self._raise_head(meta)  # locks the head row: concurrent imports queue here
        row = dict(meta.__dict__, payload=payload, tags=list(tags), **self._key)
        stmt = upsert(sql.VER).values(row).on_conflict_do_nothing()
        if await self._run(stmt.returning(sql.VER.c.version)):
            if tags:
                rows = [dict(self._key, tag=t, state_id=sid, version=version) for t in tags]
                await self._run(insert(sql.TAG).values(rows))
            self._writer.changed(sid, version)  # (it may be the latest now)
            if meta.expires_at is not None:  # (the state may expire with it: see the writer)
                self._writer.raise_floor(sid, version)
            return True
        await self._existing(meta)  # written meanwhile by a concurrent import
        return False

    async def _existing(self, meta: StateVersion) -> str | None:
        """The checksum of the stored version ``meta`` names; ConflictError if it differs."""
        ver = sql.VER.c
        rows = await self._run(
            select(ver.checksum).where(
                scoped(sql.VER), ver.state_id == meta.state_id, ver.version == meta.version
            )
        )
        found = rows[0].checksum if rows else None
        if found is not None and found != meta.checksum:
            raise ConflictError(
                f"state {meta.state_id!r} already has a different version {meta.version}"
            )
        return found

    async def _raise_head(self, meta: StateVersion) -> None:
        head = sql.HEAD.c
        newer = or_(head.latest_version.is_(None), head.latest_version < meta.version)
        expires_at = literal(meta.expires_at, UTCDateTime())
        stmt = upsert(sql.HEAD).values(
            dict(
                self._key,
                state_id=meta.state_id,
                last_version=meta.version,
                latest_version=meta.version,
                parent_version=meta.parent_version,
                expires_at=meta.expires_at,
                updated_at=utcnow(),
            )
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[head.tenant_id, head.workspace_id, head.state_id],
            set_={
                "last_version": case(
                    (head.last_version < meta.version, meta.version), else_=head.last_version
                ),
                "latest_version": case((newer, meta.version), else_=head.latest_version),
                "parent_version": case((newer, meta.parent_version), else_=head.parent_version),
                "expires_at": case((newer, expires_at), else_=head.expires_at),
                "updated_at": utcnow(),
            },
        )
        await self._run(stmt)
