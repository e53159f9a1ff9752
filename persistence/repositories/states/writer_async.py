"""The state repository's one write funnel: every change to a state's versions goes here."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, NoReturn

import orjson

from persistence.cache import Entry
from persistence.codecs import Encoded
from persistence.errors import InvalidInputError, NotFoundError, VersionConflictError
from persistence.models.base import utcnow
from persistence.records.states import StateVersion
from persistence.repositories import _cached as cached
from persistence.repositories._base_async import AsyncScope
from persistence.repositories.states import statements as sql

__all__ = ["AsyncStateWriter", "NewVersion"]  # sync: __all__ = ["NewVersion", "StateWriter"]


class NewVersion(NamedTuple):
    """A version to write: saved, rolled back to or restored from a checkpoint."""

    state_id: str
    encoded: Encoded
    now: datetime
    tags: tuple[str, ...]
    expires_at: datetime | None
    metadata: dict[str, Any]


class AsyncStateWriter:
    """Writes versions of the states of one scope: numbered saves, deletes, pruning.

    Saves on PostgreSQL are one statement (:data:`statements.SAVE`); on SQLite the same
    pieces run one after the other. Work that must follow a committed change (cache
    invalidation) hooks in here, once for every kind of write.
    """

    def __init__(self, scope: AsyncScope):
        self._scope = scope

    def params(self, sid: str, **extra: Any) -> dict[str, Any]:
        scope = self._scope
        return {
            "tenant_id": scope.tenant_id,
            "workspace_id": scope.workspace_id,
            "state_id": sid,
            "now": extra.pop("now", None) or utcnow(),
            **extra,
        }

    def check_size(self, size: int, sid: str) -> None:
        limit = self._scope.settings.max_state_bytes
        if size > limit:
            raise InvalidInputError(f"state {sid!r} is {size} bytes; the limit is {limit}")

    async def write(
        self, new: NewVersion, *, expected: int | None, keep: int | None
    ) -> StateVersion:
        """Write ``new`` as the next version of its state; its metadata. ``keep``: how many
        versions to keep (None: all).

        VersionConflictError (nothing written) when ``expected`` does not hold.
        """
        sid, encoded, now, tags, expires_at, metadata = new
        self._scope.require_writable("save")
        self.check_size(encoded.raw_size, sid)
        mode = sql.advance_mode(expected)
        params = self.params(sid, now=now, expires_at=expires_at)
        if mode == "expected":
            params["expected"] = expected
        params.update(
            raw_size=encoded.raw_size,
            stored_size=encoded.stored_size,
            codec=encoded.codec,
            checksum=encoded.checksum,
            tags=list(tags),
            metadata=metadata,
            payload=encoded.payload,
            tag_list=orjson.dumps(tags).decode(),
        )
        version, parent = await self._insert(mode, params, sid, expected)
        if parent is None and version > 1:
            # The previous history expired or was deleted: this version starts afresh.
            await self.drop_history(sid, before=version)
        if keep is not None:
            await self._scope.run(sql.PRUNE, self.params(sid, skip=keep - 1))
        written = SimpleNamespace(**params)  # the version's columns, by name
        meta = StateVersion.from_row(
            written, version=version, parent_version=parent, created_at=now, tags=tags
        )
        self.changed(sid, version, Entry(version, encoded.payload, meta))
        # Versions by number cached elsewhere: none below the floor may be served now
        floor = version if expires_at is not None or (parent is None and version > 1) else 0
        self.raise_floor(sid, max(floor, 0 if keep is None else version - keep + 1))
        return meta

    def raise_floor(self, sid: str, floor: int) -> None:
        """After this transaction commits, no version of ``sid`` below ``floor`` is
        served from the read cache (versions by number, ``_cached.state_floor_key``).

        Raised when versions go: pruned (``keep``), history dropped, the state deleted.
        A save with an expiry raises it to its own version too: the state may then expire
        and be purged with every version, its numbers starting again at 1, and a version
        by number is never cached with an expiry (so none outlives its state)."""
        if floor > 1:
            key = cached.state_floor_key(self._scope.workspace_id, sid)
            self._scope.cache_written(cached.STATE, key, None, floor)

    def changed(self, sid: str, floor: int, entry: Entry | None = None) -> None:
        """After this transaction commits, ``entry`` is the state's latest version (None:
        no version below ``floor`` is: the read cache drops what it has)."""
        key = cached.state_key(self._scope.workspace_id, sid)
        self._scope.cache_written(cached.STATE, key, entry, floor)

    async def _insert(
        self, mode: str, params: dict[str, Any], sid: str, expected: int | None
    ) -> tuple[int, int | None]:
        """Take the next number and insert the version and its tags; the numbers."""
        if self._scope.is_postgres:  # one statement (see statements.SAVE)
            statement = (sql.SAVE if params["tags"] else sql.SAVE_UNTAGGED)[mode]
            row = await self._scope.run_one(statement, params)
            if row is None:
                await self._conflict(sid, expected)
            return int(row.last_version), row.parent_version
        row = await self._scope.run_one(sql.ADVANCE[mode], params)
        if row is None:
            await self._conflict(sid, expected)
        params.update(last_version=row.last_version, parent_version=row.parent_version)
        await self._scope.run(sql.INSERT_VERSION, params)
        if params["tags"]:
            await self._scope.run(sql.INSERT_TAGS, params)
        return int(row.last_version), row.parent_version

    async def _conflict(self, sid: str, expected: int | None) -> NoReturn:
        actual = int(await self._scope.run_scalar(sql.CURRENT, self.params(sid)) or 0)
        raise VersionConflictError(
            f"state {sid!r}: expected version {expected}, but the latest is {actual}",
            expected=expected,
            actual=actual,
        )

    async def drop_history(self, sid: str, *, before: int | None = None) -> None:
        """Delete the versions of ``sid`` (those numbered below ``before``) and its
        checkpoints."""
        if before is None:
            await self._scope.run(sql.DROP_VERSIONS, self.params(sid))
        else:
            await self._scope.run(sql.DROP_VERSIONS_BEFORE, self.params(sid, version=before))
        await self._scope.run(sql.DROP_CHECKPOINTS, self.params(sid))

    async def delete_version(self, sid: str, version: int) -> None:
        """Delete one version; the one before it becomes the latest if it was the latest."""
        self._scope.require_writable("delete_version")
        if not await self._scope.run(sql.DELETE_VERSION, self.params(sid, version=version)):
            raise NotFoundError(f"state {sid!r} has no version {version}")
        self.changed(sid, version + 1)
        by_number = cached.state_version_key(self._scope.workspace_id, sid, version)
        self._scope.cache_written(cached.STATE, by_number, None, version + 1)
        newest = await self._scope.run_one(sql.NEWEST, self.params(sid))
        await self._scope.run(
            sql.REPOINT_HEAD,
            self.params(
                sid,
                version=version,
                latest=newest.version if newest else None,
                parent=newest.parent_version if newest else None,
                expires_at=newest.expires_at if newest else None,
            ),
        )

    async def delete(self, sid: str) -> None:
        """Delete every version and checkpoint of ``sid``, keeping its counter."""
        self._scope.require_writable("delete")
        latest = await self._scope.run_one(sql.HEAD_LATEST, self.params(sid))
        if latest is None or latest.latest_version is None:
            raise NotFoundError(f"state {sid!r} does not exist")
        self.changed(sid, latest.latest_version + 1)
        self.raise_floor(sid, latest.latest_version + 1)
        await self.drop_history(sid)
        await self._scope.run(sql.CLEAR_HEAD, self.params(sid))
