"""Versioned agent state: save, load, history, tags, TTL, checkpoints and retention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, NoReturn

from sqlalchemy import Connection, and_, delete, func, select, update

from persistence._driver import fetch, json_param
from persistence.codecs import (
    Encoded,
    decode,
    decode_json,
    dump_json,
    encode,
    validate_codec,
)
from persistence.errors import (
    InvalidInputError,
    NotFoundError,
    VersionConflictError,
    translate_errors,
)
from persistence.fencing import check_fence
from persistence.models.base import utcnow
from persistence.models.states import STATE_ID_LENGTH
from persistence.records import Page
from persistence.records.states import Checkpoint, LoadedState, StateVersion
from persistence.repositories import _states_pg as pg
from persistence.repositories import _states_sql as q
from persistence.repositories._base import Scope
from persistence.repositories._states_checkpoints import StateCheckpoints
from persistence.validation import validate_text

__all__ = ["StateRepository"]


class StateRepository(StateCheckpoints):
    """The versioned states of one tenant + workspace (``uow.states``).

    Versions of a state are numbered 1, 2, 3, ... and a number is never reused, even
    after ``delete_version``, ``delete`` or pruning. Values are JSON and load back
    exactly; each version records its codec and the checksum of its serialized JSON,
    verified on every load. Expired states are invisible until purged.
    """

    def __init__(self, scope: Scope):
        self._scope = scope
        self._settings = scope.settings
        self._key = {"p_tenant": scope.tenant_id, "p_workspace": scope.workspace_id}
        self._cols = {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id}

    def _params(self, state_id: str | None = None, **extra: Any) -> dict[str, Any]:
        params = dict(self._key, now=utcnow(), **extra)
        if state_id is not None:
            params["p_state"] = state_id
        return params

    # -- writing -------------------------------------------------------------------

    def save(
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
        sid = q.state_id(state_id)
        codec = self._codec(compression)
        raw = dump_json(state, what=f"state {sid!r}", max_depth=self._settings.max_json_depth)
        self._check_size(len(raw), sid)
        now = utcnow()
        # Every argument is validated before the first write (the fence check writes).
        tag_tuple, expires_at = q.tag_list(tags), q.expiry(ttl, now)
        info, expected = q.user_metadata(metadata, self._settings), self._expected(expected_version)
        keep = self._keep(max_versions)
        encoded = encode(raw, codec=codec, threshold=self._threshold)
        # fence=lease: StaleFenceError (nothing written) once a newer holder has written
        check_fence(self._scope, fence)
        return self._write(
            sid,
            encoded,
            now=now,
            tags=tag_tuple,
            expires_at=expires_at,
            metadata=info,
            expected=expected,
            keep=keep,
        )

    @property
    def _threshold(self) -> int:
        return self._settings.compression_threshold

    def _codec(self, compression: str | None) -> str:
        return validate_codec(self._settings.compression if compression is None else compression)

    def _check_size(self, size: int, sid: str) -> None:
        limit = self._settings.max_state_bytes
        if size > limit:
            raise InvalidInputError(f"state {sid!r} is {size} bytes; the limit is {limit}")

    @staticmethod
    def _expected(expected: int | None) -> int | None:
        return None if expected is None else q.count(expected, "expected_version", minimum=0)

    def _keep(self, max_versions: int | None) -> int | None:
        if max_versions is None:
            return self._settings.max_versions
        return q.count(max_versions, "max_versions", minimum=1)

    def _write(
        self,
        sid: str,
        encoded: Encoded,
        *,
        now: datetime,
        tags: tuple[str, ...],
        expires_at: datetime | None,
        metadata: dict[str, Any],
        expected: int | None,
        keep: int | None,
    ) -> StateVersion:
        self._check_size(encoded.raw_size, sid)
        if self._scope.is_postgres:
            version, parent = self._save_pg(sid, encoded, now, expected, expires_at, tags, metadata)
        else:
            version, parent = self._advance(self._conn, sid, now, expected, expires_at)
        meta = StateVersion.model_construct(
            state_id=sid,
            version=version,
            parent_version=parent,
            created_at=now,
            expires_at=expires_at,
            raw_size=encoded.raw_size,
            stored_size=encoded.stored_size,
            codec=encoded.codec,
            checksum=encoded.checksum,
            tags=tags,
            metadata=metadata,
        )
        conn = self._conn
        with translate_errors():
            if not self._scope.is_postgres:  # PostgreSQL: written by the save statement
                self._insert_version(conn, meta, encoded.payload)
            if parent is None and version > 1:
                # The previous history expired or was deleted: this version starts afresh.
                self._drop_history(conn, sid, before=version)
            if keep is not None:
                conn.execute(q.prune(keep), self._params(sid))
        return meta

    def _save_pg(
        self,
        sid: str,
        encoded: Encoded,
        now: datetime,
        expected: int | None,
        expires_at: datetime | None,
        tags: tuple[str, ...],
        metadata: dict[str, Any],
    ) -> tuple[int, int | None]:
        """PostgreSQL: head, version and tags in one prepared statement."""
        mode = q.advance_mode(expected)
        params = {
            "t": self._scope.tenant_id,
            "w": self._scope.workspace_id,
            "s": sid,
            "now": now,
            "expires": expires_at,
            "raw_size": encoded.raw_size,
            "stored_size": encoded.stored_size,
            "codec": encoded.codec,
            "checksum": encoded.checksum,
            "tags": json_param(list(tags)),
            "metadata": json_param(metadata),
            "payload": encoded.payload,
            "tag_list": list(tags),
        }
        if mode == "expected":
            params["expected"] = expected
        with translate_errors():
            rows = fetch(self._scope.connection, pg.save_sql(mode), params)
        if not rows:
            self._conflict(sid, expected)
        return int(rows[0][0]), rows[0][1]

    def _conflict(self, sid: str, expected: int | None) -> NoReturn:
        actual = self._current(self._conn, sid)
        raise VersionConflictError(
            f"state {sid!r}: expected version {expected}, but the latest is {actual}",
            expected=expected,
            actual=actual,
        )

    def _advance(
        self,
        conn: Connection,
        sid: str,
        now: datetime,
        expected: int | None,
        expires_at: datetime | None,
    ) -> tuple[int, int | None]:
        """Take the next version number on the head row (which locks it)."""
        mode = q.advance_mode(expected)
        params = dict(
            self._key,
            v_tenant=self._scope.tenant_id,
            v_workspace=self._scope.workspace_id,
            v_state=sid,
            v_expires=expires_at,
            v_now=now,
            v_expected=expected,
            now=now,
            p_state=sid,
        )
        with translate_errors():
            row = conn.execute(q.advance_head(self._scope.dialect, mode), params).first()
        if row is None:
            self._conflict(sid, expected)
        return int(row[0]), row[1]

    def _current(self, conn: Connection, sid: str) -> int:
        stmt = select(q.current_version()).where(q.head_key())
        return int(conn.execute(stmt, self._params(sid)).scalar() or 0)

    def _insert_version(self, conn: Connection, meta: StateVersion, payload: bytes) -> None:
        row = dict(meta.__dict__, payload=payload, tags=list(meta.tags), **self._cols)
        conn.execute(q.INSERT_VERSION, row)
        if meta.tags:
            conn.execute(
                q.INSERT_TAGS,
                [
                    dict(self._cols, tag=tag, state_id=meta.state_id, version=meta.version)
                    for tag in meta.tags
                ],
            )

    def _drop_history(self, conn: Connection, sid: str, *, before: int | None = None) -> None:
        same = and_(q.scoped(q.VER), q.VER.c.state_id == sid)
        if before is not None:
            same = and_(same, q.VER.c.version < before)
        conn.execute(delete(q.VER).where(same), self._key)
        conn.execute(delete(q.CKPT).where(q.scoped(q.CKPT), q.CKPT.c.state_id == sid), self._key)

    # -- reading --------------------------------------------------------------------

    def load(self, state_id: str, version: int | None = None) -> LoadedState | None:
        """The latest (or the given) version and its metadata; ``None`` if absent or expired.

        Raises DataCorruptionError naming the state and version when the stored payload
        does not match its checksum or does not decode.
        """
        sid = q.state_id(state_id)
        if self._scope.is_postgres:
            return self._load_pg(sid, version)
        if version is None:
            row = self._conn.execute(q.LOAD_LATEST, self._params(sid)).first()
        else:
            params = self._params(sid, version=q.count(version, "version", minimum=1))
            row = self._conn.execute(q.LOAD_VERSION, params).first()
        if row is None:
            return None
        meta = q.version_record(row)
        return LoadedState(self._decode(meta, row.payload), meta)

    def _load_pg(self, sid: str, version: int | None) -> LoadedState | None:
        """PostgreSQL: the same lookup as a prepared statement on the driver."""
        params: dict[str, Any] = {
            "t": self._scope.tenant_id,
            "w": self._scope.workspace_id,
            "s": sid,
            "now": utcnow(),
        }
        if version is None:
            sql = pg.LOAD_LATEST
        else:
            sql, params["version"] = pg.LOAD_VERSION, q.count(version, "version", minimum=1)
        with translate_errors():
            rows = fetch(self._scope.connection, sql, params)
        if not rows:
            return None
        meta = pg.version_record(rows[0])
        return LoadedState(self._decode(meta, rows[0][11]), meta)

    @staticmethod
    def _decode(meta: StateVersion | Checkpoint, payload: bytes) -> Any:
        what = f"state {meta.state_id!r} version {meta.version}"
        raw = decode(payload, codec=meta.codec, expected_checksum=meta.checksum, what=what)
        return decode_json(raw, what=what)  # DataCorruptionError if it does not parse

    def list_versions(
        self, state_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StateVersion]:
        """Metadata of the versions of a state, newest first (empty if absent or expired)."""
        sid = q.state_id(state_id)
        limit = q.count(limit, "limit", minimum=1, maximum=q.MAX_LIMIT)
        after = q.decode_cursor(cursor, [int])
        stmt = (
            select(*q.META_COLUMNS)
            .select_from(q.HEAD.join(q.VER, q.head_join_state()))
            .where(q.head_key(), q.alive(q.HEAD), q.alive(q.VER))
            .order_by(q.VER.c.version.desc())
            .limit(limit + 1)
        )
        if after is not None:
            stmt = stmt.where(q.VER.c.version < after[0])
        rows = self._conn.execute(stmt, self._params(sid)).all()
        return self._page(rows, limit, lambda m: (m.version,))

    @staticmethod
    def _page(rows: Sequence[Any], limit: int, key: Any) -> Page[StateVersion]:
        items = [q.version_record(row) for row in rows[:limit]]
        cursor = q.encode_cursor(*key(items[-1])) if len(rows) > limit else None
        return Page[StateVersion](items=items, next_cursor=cursor)

    def list(
        self, prefix: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[StateVersion]:
        """The latest version of each live state, by state id (optionally with a prefix)."""
        limit = q.count(limit, "limit", minimum=1, maximum=q.MAX_LIMIT)
        after = q.decode_cursor(cursor, [str])
        stmt = (
            select(*q.META_COLUMNS)
            .select_from(q.HEAD.join(q.VER, q.head_join_latest()))
            .where(q.scoped(q.HEAD), q.alive(q.HEAD))
            .order_by(q.HEAD.c.state_id)
            .limit(limit + 1)
        )
        if prefix is not None:
            prefix = validate_text(prefix, "prefix", max_length=STATE_ID_LENGTH, min_length=0)
            # substr, not LIKE: exact and case-sensitive on both backends, no escaping.
            stmt = stmt.where(func.substr(q.HEAD.c.state_id, 1, len(prefix)) == prefix)
        if after is not None:
            stmt = stmt.where(q.HEAD.c.state_id > after[0])
        rows = self._conn.execute(stmt, self._params()).all()
        return self._page(rows, limit, lambda m: (m.state_id,))

    def search_by_tags(
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
        wanted = q.tag_list(tags)
        if not wanted:
            raise InvalidInputError("search_by_tags needs at least one tag")
        match = q.match_mode(match)
        limit = q.count(limit, "limit", minimum=1, maximum=q.MAX_LIMIT)
        after = q.decode_cursor(cursor, [str])
        matching = (
            select(q.TAG.c.state_id)
            .select_from(
                q.TAG.join(
                    q.HEAD,
                    and_(
                        q.HEAD.c.tenant_id == q.TAG.c.tenant_id,
                        q.HEAD.c.workspace_id == q.TAG.c.workspace_id,
                        q.HEAD.c.state_id == q.TAG.c.state_id,
                        q.HEAD.c.latest_version == q.TAG.c.version,
                    ),
                )
            )
            .where(q.scoped(q.TAG), q.TAG.c.tag.in_(wanted), q.alive(q.HEAD))
            .group_by(q.TAG.c.state_id)
        )
        if match == "all":
            matching = matching.having(func.count() == len(wanted))
        if after is not None:
            matching = matching.where(q.TAG.c.state_id > after[0])
        found = matching.order_by(q.TAG.c.state_id).limit(limit + 1).subquery()
        stmt = (
            select(*q.META_COLUMNS)
            .select_from(q.VER.join(q.HEAD, q.head_join_latest()))
            .join(found, found.c.state_id == q.HEAD.c.state_id)
            .where(q.scoped(q.HEAD))
            .order_by(q.HEAD.c.state_id)
        )
        rows = self._conn.execute(stmt, self._params()).all()
        return self._page(rows, limit, lambda m: (m.state_id,))

    # -- history ------------------------------------------------------------------------

    def delete_version(self, state_id: str, version: int) -> None:
        """Delete one version (its number is never reused); NotFoundError if absent.

        Deleting the latest version makes the one before it the latest.
        """
        sid = q.state_id(state_id)
        version = q.count(version, "version", minimum=1)
        conn = self._conn
        gone = conn.execute(
            delete(q.VER).where(
                q.scoped(q.VER), q.VER.c.state_id == sid, q.VER.c.version == version
            ),
            self._key,
        )
        if gone.rowcount == 0:
            raise NotFoundError(f"state {sid!r} has no version {version}")
        newest = conn.execute(
            select(q.VER.c.version, q.VER.c.parent_version, q.VER.c.expires_at)
            .where(q.scoped(q.VER), q.VER.c.state_id == sid)
            .order_by(q.VER.c.version.desc())
            .limit(1),
            self._key,
        ).first()
        conn.execute(
            update(q.HEAD)
            .where(q.head_key(), q.HEAD.c.latest_version == version)
            .values(
                latest_version=newest.version if newest else None,
                parent_version=newest.parent_version if newest else None,
                expires_at=newest.expires_at if newest else None,
                updated_at=utcnow(),
            ),
            self._params(sid),
        )

    def delete(self, state_id: str) -> None:
        """Delete every version and checkpoint of a state; NotFoundError if it has none.

        The version counter is kept: saving the id again continues after the last number.
        """
        sid = q.state_id(state_id)
        conn = self._conn
        head = conn.execute(
            select(q.HEAD.c.latest_version).where(q.head_key()), self._params(sid)
        ).first()
        if head is None or head.latest_version is None:
            raise NotFoundError(f"state {sid!r} does not exist")
        self._drop_history(conn, sid)
        conn.execute(
            update(q.HEAD)
            .where(q.head_key())
            .values(latest_version=None, parent_version=None, expires_at=None),
            self._params(sid),
        )

    def rollback(
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
        sid, now = q.state_id(state_id), utcnow()
        version = q.count(to_version, "to_version", minimum=1)
        # every argument is checked before the first read
        expires_at, expected = q.expiry(ttl, now), self._expected(expected_version)
        keep = self._keep(max_versions)
        source = self._source_row(sid, version)
        meta = q.version_record(source)
        self._decode(meta, source.payload)
        encoded = Encoded(source.payload, meta.codec, meta.checksum, meta.raw_size)  # type: ignore[arg-type]
        return self._write(
            sid,
            encoded,
            now=now,
            tags=meta.tags,
            expires_at=expires_at,
            metadata=meta.metadata,
            expected=expected,
            keep=keep,
        )

    def _source_row(self, sid: str, version: int) -> Any:
        row = self._conn.execute(q.LOAD_VERSION, self._params(sid, version=version)).first()
        if row is None:
            raise NotFoundError(f"state {sid!r} has no version {version}")
        return row
