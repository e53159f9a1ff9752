"""Versioned agent state: save, load, history, tags, TTL, checkpoints and retention."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import and_, func, select

from persistence._cache_front_async import AsyncReadCache
from persistence.cache import Entry
from persistence.codecs import Encoded, dump_json, encode, validate_codec
from persistence.errors import DataCorruptionError, InvalidInputError, NotFoundError
from persistence.fencing_async import check_fence
from persistence.models.base import utcnow
from persistence.models.states import STATE_ID_LENGTH
from persistence.records import Page
from persistence.records.states import Checkpoint, LoadedState, StateStats, StateVersion
from persistence.repositories import _cached as cached
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import scoped
from persistence.repositories.states import inputs
from persistence.repositories.states import statements as sql
from persistence.repositories.states.checkpoints_async import AsyncStateCheckpoints, decode_payload
from persistence.repositories.states.retention_async import AsyncStateRetention
from persistence.repositories.states.writer_async import AsyncStateWriter, NewVersion
from persistence.validation import validate_text

__all__ = ["AsyncStateRepository"]


class AsyncStateRepository:
    """The versioned states of one tenant + workspace (``uow.states``).

    Versions of a state are numbered 1, 2, 3, ... and a number is never reused, even
    after ``delete_version``, ``delete`` or pruning. Values are JSON and load back
    exactly; each version records its codec and the checksum of its serialized JSON,
    verified on every load. Expired states are invisible until purged.
    """

    def __init__(self, scope: AsyncScope):
        self._scope = scope
        self._settings = scope.settings
        self._writer = AsyncStateWriter(scope)
        self._checkpoints: AsyncStateCheckpoints | None = None
        self._retention: AsyncStateRetention | None = None

    # -- writing -------------------------------------------------------------------

    async def save(
        self,
        state_id: str,
        state: Any,
        *,
        expected_version: int | None = None,
        tags: Iterable[str] = (),
        ttl: float | Any = None,
        metadata: dict[str, Any] | None = None,
        compression: str | None = None,
        max_versions: int | None = None,
        fence: object | None = None,
    ) -> StateVersion:
        """Write ``state`` as the next version of ``state_id`` and return its metadata.

        ``expected_version=N`` writes only if the latest version is N (0: only if the
        state does not exist), else raises VersionConflictError naming both numbers.
        ``ttl`` (seconds or timedelta) sets an expiry; ``compression`` overrides the
        settings codec; ``max_versions`` (default from settings) prunes older versions
        in the same transaction. Bad input raises InvalidInputError before any write:
        non-JSON values, NaN or infinity, a state over ``max_state_bytes``, a bad state
        id, tag, TTL or codec.
        """
        self._scope.require_writable("save")  # before the fence check, which writes
        sid = inputs.state_id(state_id)
        codec = validate_codec(self._settings.compression if compression is None else compression)
        raw = dump_json(state, what=f"state {sid!r}", max_depth=self._settings.max_json_depth)
        self._writer.check_size(len(raw), sid)
        now = utcnow()
        # Every argument is validated before the first write (the fence check writes).
        tag_tuple, expires_at = inputs.tag_list(tags), inputs.expiry(ttl, now)
        info = inputs.user_metadata(metadata, self._settings)
        expected = self._expected(expected_version)
        keep = self._keep(max_versions)
        encoded = encode(raw, codec=codec, threshold=self._settings.compression_threshold)
        # fence=lease: StaleFenceError (nothing written) once a newer holder has written
        await check_fence(self._scope, fence)
        new = NewVersion(sid, encoded, now, tag_tuple, expires_at, info)
        return await self._writer.write(new, expected=expected, keep=keep)

    @staticmethod
    def _expected(expected: int | None) -> int | None:
        return None if expected is None else inputs.count(expected, "expected_version", minimum=0)

    def _keep(self, max_versions: int | None) -> int | None:
        if max_versions is None:
            return self._settings.max_versions
        return inputs.count(max_versions, "max_versions", minimum=1)

    # -- reading --------------------------------------------------------------------

    async def load(self, state_id: str, version: int | None = None) -> LoadedState | None:
        """The latest (or the given) version and its metadata; ``None`` if absent or expired.

        Raises DataCorruptionError naming the state and version when the stored payload
        does not match its checksum or does not decode.
        """
        sid, ws = inputs.state_id(state_id), self._scope.workspace_id
        number = None if version is None else inputs.count(version, "version", minimum=1)
        latest = cached.state_key(ws, sid)
        if number is None:
            key, floor = latest, None
            cache = self._scope.cache_for(latest)
        else:
            key, floor = cached.state_version_key(ws, sid, number), cached.state_floor_key(ws, sid)
            cache = self._scope.cache_for(latest, key, floor)
        if cache is not None:
            return await self._load_cached(cache, (key, floor), sid, number)
        row = await self._read(sid, number)
        if row is None:
            return None
        meta = inputs.version_record(row)
        return LoadedState(decode_payload(meta, row.payload), meta)

    async def _read(self, sid: str, number: int | None) -> Any:
        """The row of ``sid``'s latest version (or of version ``number``), or None."""
        if number is None:
            return await self._scope.run_one(sql.LOAD_LATEST, self._writer.params(sid))
        params = self._writer.params(sid, version=number)
        return await self._scope.run_one(sql.LOAD_VERSION, params)

    async def _load_cached(
        self,
        cache: AsyncReadCache,
        keys: tuple[str, str | None],
        sid: str,
        number: int | None,
    ) -> LoadedState | None:
        """A load through the read cache (``keys``: the entry's key and, for a version by
        number, the state's floor key): a hit is verified (checksum) and decoded as a row
        from the database is; a miss is read, then filled (a version by number only if
        neither it nor its state's head has an expiry: a state that can expire may be
        purged with every version, its numbers starting again at 1)."""
        tenant_id, (key, floor) = self._scope.tenant_id, keys
        entry, ticket = await cache.get(tenant_id, cached.STATE, key, floor=floor)
        if entry is not None:
            meta: StateVersion = entry.meta
            if meta.expires_at is None or meta.expires_at > utcnow():
                try:  # verified as a row of the database is; a bad entry is dropped
                    return LoadedState(decode_payload(meta, entry.value), meta)
                except DataCorruptionError:
                    await cache.discard(tenant_id, key)
        row = await self._read(sid, number)
        if row is None:
            return None
        meta = inputs.version_record(row)
        loaded = LoadedState(decode_payload(meta, row.payload), meta)
        if floor is None or (meta.expires_at is None and row.head_expires_at is None):
            entry = Entry(meta.version, row.payload, meta)
            await cache.fill(tenant_id, cached.STATE, key, entry, ticket, floor=floor)
        return loaded

    async def list_versions(
        self, state_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StateVersion]:
        """Metadata of the versions of a state, newest first (empty if absent or expired)."""
        sid = inputs.state_id(state_id)
        limit = inputs.count(limit, "limit", minimum=1, maximum=inputs.MAX_LIMIT)
        after = inputs.decode_cursor(cursor, [int])
        stmt = (
            select(*sql.META_COLUMNS)
            .select_from(sql.HEAD.join(sql.VER, sql.head_join_state()))
            .where(sql.of_state(sql.HEAD), sql.alive(sql.HEAD), sql.alive(sql.VER))
            .order_by(sql.VER.c.version.desc())
            .limit(limit + 1)
        )
        if after is not None:
            stmt = stmt.where(sql.VER.c.version < after[0])
        rows = await self._scope.execute(stmt, self._writer.params(sid))
        return self._page(rows, limit, lambda m: (m.version,))

    @staticmethod
    def _page(rows: Sequence[Any], limit: int, key: Any) -> Page[StateVersion]:
        items = [inputs.version_record(row) for row in rows[:limit]]
        cursor = inputs.encode_cursor(*key(items[-1])) if len(rows) > limit else None
        return Page[StateVersion](items=items, next_cursor=cursor)

    def _scope_params(self) -> dict[str, Any]:
        scope = self._scope
        return {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id, "now": utcnow()}

    async def list(
        self, prefix: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StateVersion]:
        """The latest version of each live state, by state id (optionally with a prefix)."""
        limit = inputs.count(limit, "limit", minimum=1, maximum=inputs.MAX_LIMIT)
        after = inputs.decode_cursor(cursor, [str])
        head = sql.HEAD.c
        stmt = (
            select(*sql.META_COLUMNS)
            .select_from(sql.HEAD.join(sql.VER, sql.head_join_latest()))
            .where(scoped(sql.HEAD), sql.alive(sql.HEAD))
            .order_by(head.state_id)
            .limit(limit + 1)
        )
        if prefix is not None:
            prefix = validate_text(prefix, "prefix", max_length=STATE_ID_LENGTH, min_length=0)
            # substr, not LIKE: exact and case-sensitive on both backends, no escaping.
            stmt = stmt.where(func.substr(head.state_id, 1, len(prefix)) == prefix)
        if after is not None:
            stmt = stmt.where(head.state_id > after[0])
        rows = await self._scope.execute(stmt, self._scope_params())
        return self._page(rows, limit, lambda m: (m.state_id,))

    async def search_by_tags(
        self,
        tags: Iterable[str],
        match: Literal["all", "any"] = "all",
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[StateVersion]:
        """Latest versions of live states carrying all (or any) of ``tags``, by state id.

        Only each state's latest version is matched; older versions' tags are ignored.
        """
        wanted = inputs.tag_list(tags)
        if not wanted:
            raise InvalidInputError("search_by_tags needs at least one tag")
        match = inputs.match_mode(match)
        limit = inputs.count(limit, "limit", minimum=1, maximum=inputs.MAX_LIMIT)
        after = inputs.decode_cursor(cursor, [str])
        tag, head = sql.TAG.c, sql.HEAD.c
        same_version = and_(
            head.tenant_id == tag.tenant_id,
            head.workspace_id == tag.workspace_id,
            head.state_id == tag.state_id,
            head.latest_version == tag.version,
        )
        matching = (
            select(tag.state_id)
            .select_from(sql.TAG.join(sql.HEAD, same_version))
            .where(scoped(sql.TAG), tag.tag.in_(wanted), sql.alive(sql.HEAD))
            .group_by(tag.state_id)
        )
        if match == "all":
            matching = matching.having(func.count() == len(wanted))
        if after is not None:
            matching = matching.where(tag.state_id > after[0])
        found = matching.order_by(tag.state_id).limit(limit + 1).subquery()
        stmt = (
            select(*sql.META_COLUMNS)
            .select_from(sql.VER.join(sql.HEAD, sql.head_join_latest()))
            .join(found, found.c.state_id == head.state_id)
            .where(scoped(sql.HEAD))
            .order_by(head.state_id)
        )
        rows = await self._scope.execute(stmt, self._scope_params())
        return self._page(rows, limit, lambda m: (m.state_id,))

    # -- history ------------------------------------------------------------------------

    async def delete_version(self, state_id: str, version: int) -> None:
        """Delete one version (its number is never reused); NotFoundError if absent.

        Deleting the latest version makes the one before it the latest.
        """
        sid = inputs.state_id(state_id)
        await self._writer.delete_version(sid, inputs.count(version, "version", minimum=1))

    async def delete(self, state_id: str) -> None:
        """Delete every version and checkpoint of a state; NotFoundError if it has none.

        The version counter is kept: saving the id again continues after the last number.
        """
        await self._writer.delete(inputs.state_id(state_id))

    async def rollback(
        self,
        state_id: str,
        to_version: int,
        *,
        expected_version: int | None = None,
        ttl: float | Any = None,
        max_versions: int | None = None,
    ) -> StateVersion:
        """Write a new version whose content, tags and metadata equal ``to_version``'s.

        History is kept. NotFoundError if that version does not exist (or expired);
        DataCorruptionError if it fails its checksum (corrupt data is never copied).
        """
        sid, now = inputs.state_id(state_id), utcnow()
        number = inputs.count(to_version, "to_version", minimum=1)
        # every argument is checked before the first read
        expires_at, expected = inputs.expiry(ttl, now), self._expected(expected_version)
        keep = self._keep(max_versions)
        params = self._writer.params(sid, version=number)
        source = await self._scope.run_one(sql.LOAD_VERSION, params)
        if source is None:
            raise NotFoundError(f"state {sid!r} has no version {number}")
        meta = inputs.version_record(source)
        decode_payload(meta, source.payload)
        encoded = Encoded(source.payload, meta.codec, meta.checksum, meta.raw_size)  # type: ignore[arg-type]
        new = NewVersion(sid, encoded, now, meta.tags, expires_at, meta.metadata)
        return await self._writer.write(new, expected=expected, keep=keep)

    # -- checkpoints (persistence.repositories.states.checkpoints) ------------------------

    @property
    def _named(self) -> AsyncStateCheckpoints:
        if self._checkpoints is None:
            self._checkpoints = AsyncStateCheckpoints(self._scope, self._writer)
        return self._checkpoints

    async def create_checkpoint(
        self,
        state_id: str,
        name: str,
        *,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Snapshot a version (default: the latest) under ``name``.

        The checkpoint keeps its own copy of the payload, so pruning or deleting the
        version does not affect it; it is deleted with the state. NotFoundError if the
        version does not exist; AlreadyExistsError if the state has a checkpoint ``name``.
        """
        self._scope.require_writable("create_checkpoint")
        sid, label = inputs.state_id(state_id), inputs.checkpoint_name(name)
        info = inputs.user_metadata(metadata, self._settings)
        number = None if version is None else inputs.count(version, "version", minimum=1)
        return await self._named.create(sid, label, number, info)

    async def list_checkpoints(self, state_id: str) -> builtins.list[Checkpoint]:
        """The checkpoints of a state, oldest first."""
        return await self._named.list(state_id)

    async def restore_checkpoint(
        self,
        checkpoint_id: uuid.UUID | str,
        *,
        expected_version: int | None = None,
        ttl: float | Any = None,
        max_versions: int | None = None,
    ) -> StateVersion:
        """Write the checkpoint's content (and tags) as a new version of its state."""
        expected, keep = self._expected(expected_version), self._keep(max_versions)
        return await self._named.restore(checkpoint_id, expected=expected, ttl=ttl, keep=keep)

    async def delete_checkpoint(self, checkpoint_id: uuid.UUID | str) -> None:
        """Delete a checkpoint; NotFoundError if it does not exist."""
        await self._named.delete(checkpoint_id)

    # -- retention and transfer (persistence.repositories.states.retention) -----------------

    @property
    def _kept(self) -> AsyncStateRetention:
        if self._retention is None:
            self._retention = AsyncStateRetention(self._scope, self._writer)
        return self._retention

    async def stats(self) -> StateStats:
        """Counts and sizes of this workspace's states (expired ones included until purged)."""
        return await self._kept.stats()

    async def purge_expired(
        self, batch_size: int | None = None, *, max_batches: int | None = None
    ) -> int:
        """Delete expired states and expired old versions; how many versions were deleted.
        See :meth:`StateRetention.purge_expired`."""
        return await self._kept.purge_expired(batch_size, max_batches=max_batches)

    def iter_all_versions(self, *, batch_size: int = 200) -> AsyncIterator[LoadedState]:
        """Every stored version of every state of the workspace, for export; see
        :meth:`StateRetention.iter_all_versions`."""
        return self._kept.iter_all_versions(batch_size=batch_size)

    async def import_version(self, meta: StateVersion, state: Any) -> bool:
        """Write exactly version ``meta.version`` with ``meta``'s recorded metadata; see
        :meth:`StateRetention.import_version`."""
        return await self._kept.import_version(meta, state)
