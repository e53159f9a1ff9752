"""Statistics, expiry purge and version-exact import/export of the state repository."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, delete, exists, func, literal, or_, select, tuple_

from persistence.codecs import checksum, compress, dump_json, validate_codec
from persistence.errors import ConflictError, InvalidInputError, translate_errors
from persistence.models.base import UTCDateTime, utcnow
from persistence.records.states import LoadedState, StateStats, StateVersion
from persistence.repositories import _states_sql as q
from persistence.repositories._base import Scope


class StateMaintenance:
    """Mixed into StateRepository: work that is not on the per-request hot path."""

    _scope: Scope
    _key: dict[str, Any]
    _cols: dict[str, Any]

    @property
    def _conn(self) -> Connection:
        return self._scope.connection

    def _check_size(self, size: int, sid: str) -> None:
        raise NotImplementedError  # provided by StateRepository

    def _decode(self, meta: Any, payload: bytes) -> Any:
        raise NotImplementedError  # provided by StateRepository

    # -- statistics -----------------------------------------------------------------

    def stats(self) -> StateStats:
        """Counts and sizes of this workspace's states (expired ones included until purged)."""
        conn, now = self._conn, utcnow()
        versions, raw, stored = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(q.VER.c.raw_size), 0),
                func.coalesce(func.sum(q.VER.c.stored_size), 0),
            ).where(q.scoped(q.VER)),
            self._key,
        ).one()
        live, dead = conn.execute(
            select(
                func.coalesce(func.sum(case((q.alive(q.HEAD, now), 1), else_=0)), 0),
                func.coalesce(func.sum(case((q.alive(q.HEAD, now), 0), else_=1)), 0),
            ).where(q.scoped(q.HEAD), q.HEAD.c.latest_version.is_not(None)),
            self._key,
        ).one()
        per_state = (
            select(func.count().label("n"))
            .where(q.scoped(q.VER))
            .group_by(q.VER.c.state_id)
            .subquery()
        )
        widest = conn.execute(select(func.max(per_state.c.n)), self._key).scalar()
        checkpoints = conn.execute(
            select(func.count()).where(q.scoped(q.CKPT)), self._key
        ).scalar_one()
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

    def purge_expired(
        self, batch_size: int | None = None, *, max_batches: int | None = None
    ) -> int:
        """Delete expired states (every version, tag and checkpoint) and expired old
        versions of live states; return how many versions were deleted.

        Works in batches of ``batch_size`` rows (default ``settings.gc_batch_size``),
        never one statement for everything; ``max_batches`` bounds the work per call
        (call again until it returns 0). A purged state is gone entirely: saving its id
        again starts at version 1.
        """
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
                done = step(size, now)
                budget = None if budget is None else budget - 1
                deleted += done if counts else 0
                if done < size:
                    break
        return deleted

    def _delete_versions(self, keys: Any) -> int:
        pk = tuple_(q.VER.c.tenant_id, q.VER.c.workspace_id, q.VER.c.state_id, q.VER.c.version)
        with translate_errors():
            return int(self._conn.execute(delete(q.VER).where(pk.in_(keys)), self._key).rowcount)

    def _purge_versions_of_expired_states(self, size: int, now: datetime) -> int:
        keys = (
            select(q.VER.c.tenant_id, q.VER.c.workspace_id, q.VER.c.state_id, q.VER.c.version)
            .select_from(q.HEAD.join(q.VER, q.head_join_state()))
            .where(q.scoped(q.HEAD), q.HEAD.c.expires_at <= now)
            .limit(size)
        )
        return self._delete_versions(keys)

    def _purge_expired_versions(self, size: int, now: datetime) -> int:
        keys = (
            select(q.VER.c.tenant_id, q.VER.c.workspace_id, q.VER.c.state_id, q.VER.c.version)
            .where(q.scoped(q.VER), q.VER.c.expires_at <= now)
            .limit(size)
        )
        return self._delete_versions(keys)

    def _purge_expired_heads(self, size: int, now: datetime) -> int:
        """Drop the heads (and checkpoints) of expired states whose versions are gone."""
        conn = self._conn
        no_versions = ~exists().where(q.head_join_state())
        ids = conn.scalars(
            select(q.HEAD.c.state_id)
            .where(q.scoped(q.HEAD), q.HEAD.c.expires_at <= now, no_versions)
            .order_by(q.HEAD.c.state_id)
            .limit(size),
            self._key,
        ).all()
        if ids:
            conn.execute(
                delete(q.CKPT).where(q.scoped(q.CKPT), q.CKPT.c.state_id.in_(ids)), self._key
            )
            conn.execute(
                delete(q.HEAD).where(
                    q.scoped(q.HEAD), q.HEAD.c.state_id.in_(ids), q.HEAD.c.expires_at <= now
                ),
                self._key,
            )
        return len(ids)

    # -- export / import -----------------------------------------------------------------

    def iter_all_versions(self, *, batch_size: int = 200) -> Iterator[LoadedState]:
        """Every stored version of every state of the workspace, for export.

        Yields ``LoadedState(state, meta)`` ordered by state id, then version (oldest
        first per state), reading ``batch_size`` rows at a time (keyset, so memory stays
        bounded). Expired versions not yet purged are included; every payload is
        checksum-verified (DataCorruptionError otherwise). Feed each item to
        :meth:`import_version` to rebuild the history elsewhere.
        """
        size = q.count(batch_size, "batch_size", minimum=1, maximum=q.MAX_LIMIT)
        after: tuple[str, int] | None = None
        while True:
            stmt = (
                select(*q.META_COLUMNS, q.VER.c.payload)
                .where(q.scoped(q.VER))
                .order_by(q.VER.c.state_id, q.VER.c.version)
                .limit(size)
            )
            if after is not None:
                stmt = stmt.where(tuple_(q.VER.c.state_id, q.VER.c.version) > after)
            rows = self._conn.execute(stmt, self._key).all()
            for row in rows:
                meta = q.version_record(row)
                yield LoadedState(self._decode(meta, row.payload), meta)
            if len(rows) < size:
                return
            after = (rows[-1].state_id, rows[-1].version)

    def import_version(self, meta: StateVersion, state: Any) -> bool:
        """Write exactly version ``meta.version`` of ``meta.state_id`` with ``meta``'s
        recorded metadata (created_at, parent, expiry, codec, tags, user metadata).

        Returns True when written, False (writing nothing at all) when an identical
        version (same checksum) exists; raises ConflictError when a different one exists and
        InvalidInputError when ``state`` does not match ``meta.checksum``/``raw_size``.
        The head's counter becomes max(counter, version), so later saves never reuse it.
        """
        sid = q.state_id(meta.state_id)
        version = q.count(meta.version, "version", minimum=1)
        depth = self._scope.settings.max_json_depth
        raw = dump_json(state, what=f"state {sid!r} version {version}", max_depth=depth)
        self._check_size(len(raw), sid)
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
        conn = self._conn
        if self._existing(conn, meta) is not None:  # identical: False; different: raises
            return False
        self._raise_head(conn, meta)  # locks the head row: concurrent imports queue here
        row = dict(meta.__dict__, payload=payload, tags=list(tags), **self._cols)
        insert = q.dialect_insert(self._scope.dialect, q.VER).values(row)
        with translate_errors():
            if conn.execute(insert.on_conflict_do_nothing().returning(q.VER.c.version)).first():
                if tags:
                    conn.execute(
                        q.INSERT_TAGS,
                        [dict(self._cols, tag=t, state_id=sid, version=version) for t in tags],
                    )
                return True
        self._existing(conn, meta)  # written meanwhile by a concurrent import
        return False

    def _existing(self, conn: Connection, meta: StateVersion) -> str | None:
        """The checksum of the stored version ``meta`` names; ConflictError if it differs."""
        found = conn.execute(
            select(q.VER.c.checksum).where(
                q.scoped(q.VER), q.VER.c.state_id == meta.state_id, q.VER.c.version == meta.version
            ),
            self._key,
        ).scalar()
        if found is not None and found != meta.checksum:
            raise ConflictError(
                f"state {meta.state_id!r} already has a different version {meta.version}"
            )
        return found

    def _raise_head(self, conn: Connection, meta: StateVersion) -> None:
        head = q.HEAD.c
        newer = or_(head.latest_version.is_(None), head.latest_version < meta.version)
        expires_at = literal(meta.expires_at, UTCDateTime())
        stmt = q.dialect_insert(self._scope.dialect, q.HEAD).values(
            dict(
                self._cols,
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
        with translate_errors():
            conn.execute(stmt)
