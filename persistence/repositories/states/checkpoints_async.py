"""Named checkpoints of states: snapshots with their own payload copy, restorable."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select

from persistence.codecs import Encoded, load_payload
from persistence.errors import (
    AlreadyExistsError,
    NotFoundError,
)
from persistence.models.base import new_id, utcnow
from persistence.records.states import Checkpoint, StateVersion
from persistence.repositories._base_async import AsyncScope
from persistence.repositories._sql import scoped, upsert
from persistence.repositories.states import inputs
from persistence.repositories.states import statements as sql
from persistence.repositories.states.writer_async import AsyncStateWriter, NewVersion

__all__ = ["AsyncStateCheckpoints", "decode_payload"]


def decode_payload(meta: StateVersion | Checkpoint, payload: bytes) -> Any:
    """The value of a stored payload, verified against ``meta``'s checksum.

    DataCorruptionError naming the state and version when it does not match or parse.
    """
    return load_payload(
        payload,
        codec=meta.codec,
        expected_checksum=meta.checksum,
        what=lambda: f"state {meta.state_id!r} version {meta.version}",
    )


class AsyncStateCheckpoints:
    """Create, list, restore and delete the checkpoints of one scope's states."""

    def __init__(self, scope: AsyncScope, writer: AsyncStateWriter):
        self._scope = scope
        self._writer = writer

    def _key(self) -> dict[str, Any]:
        return {"tenant_id": self._scope.tenant_id, "workspace_id": self._scope.workspace_id}

    async def create(
        self, sid: str, label: str, version: int | None, info: dict[str, Any]
    ) -> Checkpoint:
        """Snapshot version ``version`` (None: the latest) of ``sid`` under ``label``
        (arguments validated by the repository)."""
        source = await self._source(sid, version)
        meta = inputs.version_record(source)
        decode_payload(meta, source.payload)
        values = dict(
            self._key(),
            id=new_id(),
            state_id=sid,
            name=label,
            version=meta.version,
            created_at=utcnow(),
            raw_size=meta.raw_size,
            stored_size=meta.stored_size,
            codec=meta.codec,
            checksum=meta.checksum,
            tags=list(meta.tags),
            metadata=info,
            payload=source.payload,
        )
        stmt = upsert(sql.CKPT).values(values)
        created = await self._scope.execute(stmt.on_conflict_do_nothing().returning(sql.CKPT.c.id))
        if not created:
            raise AlreadyExistsError(f"state {sid!r} already has a checkpoint named {label!r}")
        return inputs.checkpoint_record(SimpleNamespace(**values))

    async def _source(self, sid: str, version: int | None) -> Any:
        if version is None:
            found = await self._scope.run_one(sql.LOAD_LATEST, self._writer.params(sid))
            if found is None:
                raise NotFoundError(f"state {sid!r} does not exist")
            return found
        found = await self._scope.run_one(
            sql.LOAD_VERSION, self._writer.params(sid, version=version)
        )
        if found is None:
            raise NotFoundError(f"state {sid!r} has no version {version}")
        return found

    async def list(self, state_id: str) -> list[Checkpoint]:
        """The checkpoints of a state, oldest first."""
        sid = inputs.state_id(state_id)
        stmt = (
            select(*[c for c in sql.CKPT.c if c.name != "payload"])
            .where(scoped(sql.CKPT), sql.CKPT.c.state_id == sid)
            .order_by(sql.CKPT.c.created_at, sql.CKPT.c.name)
        )
        rows = await self._scope.execute(stmt, self._key())
        return [inputs.checkpoint_record(row) for row in rows]

    async def _row(self, checkpoint_id: uuid.UUID | str) -> Any:
        cid = inputs.checkpoint_id(checkpoint_id)
        stmt = select(sql.CKPT).where(scoped(sql.CKPT), sql.CKPT.c.id == cid)
        rows = await self._scope.execute(stmt, self._key())
        if not rows:
            raise NotFoundError(f"checkpoint {cid} does not exist")
        return rows[0]

    async def restore(
        self, checkpoint_id: uuid.UUID | str, *, expected: int | None, ttl: Any, keep: int | None
    ) -> StateVersion:
        """Write the checkpoint's content (and tags) as a new version of its state."""
        self._scope.require_writable("restore_checkpoint")
        now = utcnow()
        expires_at = inputs.expiry(ttl, now)  # every argument is checked before the first read
        row = await self._row(checkpoint_id)
        checkpoint = inputs.checkpoint_record(row)
        decode_payload(checkpoint, row.payload)
        encoded = Encoded(row.payload, checkpoint.codec, checkpoint.checksum, checkpoint.raw_size)  # type: ignore[arg-type]
        restored = {"restored_from_checkpoint": str(checkpoint.id), "checkpoint": checkpoint.name}
        new = NewVersion(checkpoint.state_id, encoded, now, checkpoint.tags, expires_at, restored)
        return await self._writer.write(new, expected=expected, keep=keep)

    async def delete(self, checkpoint_id: uuid.UUID | str) -> None:
        """Delete a checkpoint; NotFoundError if it does not exist."""
        self._scope.require_writable("delete_checkpoint")
        row = await self._row(checkpoint_id)
        stmt = delete(sql.CKPT).where(scoped(sql.CKPT), sql.CKPT.c.id == row.id)
        await self._scope.execute(stmt, self._key())
