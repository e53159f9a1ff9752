"""Named checkpoints of states: snapshots with their own payload copy, restorable."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select

from persistence.codecs import Encoded
from persistence.errors import (
    AlreadyExistsError,
    NotFoundError,
    translate_errors,
)
from persistence.models.base import new_id, utcnow
from persistence.records.states import Checkpoint, StateVersion
from persistence.repositories import _states_sql as q
from persistence.repositories._states_maintenance import StateMaintenance


class StateCheckpoints(StateMaintenance):
    """Mixed into StateRepository: create, list, restore and delete checkpoints."""

    # Provided by StateRepository (declared here for the type checker).
    def _params(self, state_id: str | None = None, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _source_row(self, sid: str, version: int) -> Any:
        raise NotImplementedError

    def _expected(self, expected: int | None) -> int | None:
        raise NotImplementedError

    def _keep(self, max_versions: int | None) -> int | None:
        raise NotImplementedError

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
        raise NotImplementedError

    def create_checkpoint(
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
        sid = q.state_id(state_id)
        label = q.checkpoint_name(name)
        info = q.user_metadata(metadata, self._scope.settings)
        if version is None:
            source = self._conn.execute(q.LOAD_LATEST, self._params(sid)).first()
            if source is None:
                raise NotFoundError(f"state {sid!r} does not exist")
        else:
            source = self._source_row(sid, q.count(version, "version", minimum=1))
        meta = q.version_record(source)
        self._decode(meta, source.payload)
        values = dict(
            self._cols,
            id=new_id(),
            state_id=sid,
            name=label,
            version=meta.version,
            created_at=utcnow(),
            raw_size=meta.raw_size,
            stored_size=meta.stored_size,
            codec=meta.codec,
            checksum=meta.checksum,
            tags=builtins.list(meta.tags),
            metadata=info,
            payload=source.payload,
        )
        stmt = q.dialect_insert(self._scope.dialect, q.CKPT).values(values)
        with translate_errors():
            created = self._conn.execute(
                stmt.on_conflict_do_nothing().returning(q.CKPT.c.id)
            ).first()
        if created is None:
            raise AlreadyExistsError(f"state {sid!r} already has a checkpoint named {label!r}")
        return q.checkpoint_record(SimpleNamespace(**values))

    def list_checkpoints(self, state_id: str) -> builtins.list[Checkpoint]:
        """The checkpoints of a state, oldest first."""
        sid = q.state_id(state_id)
        stmt = (
            select(*[c for c in q.CKPT.c if c.name != "payload"])
            .where(q.scoped(q.CKPT), q.CKPT.c.state_id == sid)
            .order_by(q.CKPT.c.created_at, q.CKPT.c.name)
        )
        return [q.checkpoint_record(row) for row in self._conn.execute(stmt, self._key)]

    def _checkpoint_row(self, checkpoint_id: uuid.UUID | str) -> Any:
        cid = q.checkpoint_id(checkpoint_id)
        row = self._conn.execute(
            select(q.CKPT).where(q.scoped(q.CKPT), q.CKPT.c.id == cid), self._key
        ).first()
        if row is None:
            raise NotFoundError(f"checkpoint {cid} does not exist")
        return row

    def restore_checkpoint(
        self,
        checkpoint_id: uuid.UUID | str,
        *,
        expected_version: int | None = None,
        ttl: float | Any = None,
        max_versions: int | None = None,
    ) -> StateVersion:
        """Write the checkpoint's content (and tags) as a new version of its state."""
        now = utcnow()
        # every argument is checked before the first read
        expires_at, expected = q.expiry(ttl, now), self._expected(expected_version)
        keep = self._keep(max_versions)
        row = self._checkpoint_row(checkpoint_id)
        cp = q.checkpoint_record(row)
        self._decode(cp, row.payload)
        encoded = Encoded(row.payload, cp.codec, cp.checksum, cp.raw_size)  # type: ignore[arg-type]
        return self._write(
            cp.state_id,
            encoded,
            now=now,
            tags=cp.tags,
            expires_at=expires_at,
            metadata={"restored_from_checkpoint": str(cp.id), "checkpoint": cp.name},
            expected=expected,
            keep=keep,
        )

    def delete_checkpoint(self, checkpoint_id: uuid.UUID | str) -> None:
        """Delete a checkpoint; NotFoundError if it does not exist."""
        row = self._checkpoint_row(checkpoint_id)
        self._conn.execute(delete(q.CKPT).where(q.scoped(q.CKPT), q.CKPT.c.id == row.id), self._key)
