"""What the checkpointer does, once for sync and async: each call one unit of work of the
saver's tenant and workspace, LangGraph's types in and out."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from persistence.errors import DataCorruptionError, InvalidInputError, InvalidTypeError
from persistence.langgraph import _serial as serial
from persistence.langgraph._checkpoints_async import AsyncCheckpointRepository
from persistence.langgraph._listing import Listing, query
from persistence.langgraph._pruning import keep_set
from persistence.langgraph._stored import Stored

if TYPE_CHECKING:
    from persistence.database_async import AsyncDatabase

__all__ = ["AsyncCheckpointer"]

#: Checkpoints the saver was asked for by id, remembered so that a put branching from
#: one of them (time travel, update_state on an old checkpoint) is a deliberate fork.
ADDRESSED = 4096


class AsyncCheckpointer:
    def __init__(
        self,
        db: AsyncDatabase,
        tenant: str,
        workspace: str,
        serde: SerializerProtocol,
        encoding: serial.Encoding,
        *,
        single_writer: bool,
    ):
        self._db = db
        self._tenant = tenant
        self._workspace = workspace
        self.serde = serde
        self._encoding = encoding
        self._single_writer = single_writer
        self._addressed: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._holder = uuid.uuid4().hex  # this writer, in the thread rows it heads

    def _unit(self, read_only: bool = False) -> Any:
        return self._db.unit_of_work(self._tenant, self._workspace, read_only=read_only)

    # -- reads ------------------------------------------------------------------------

    async def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _thread(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is not None:
            checkpoint_id = serial.validate_id(checkpoint_id, "checkpoint_id")
            self._remember(thread_id, ns, checkpoint_id)
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            if checkpoint_id is not None:
                row = await repo.get(thread_id, ns, checkpoint_id)
                return None if row is None else self._tuples(await repo.stored([row]))[0]
            stored, cached = await repo.latest(thread_id, ns)
            if stored is None:
                return None
            try:
                return self._tuples(stored)[0]
            except DataCorruptionError:
                if not cached:
                    raise
            await repo.discard_latest(thread_id, ns)  # what the cache held was altered
            stored, _ = await repo.latest(thread_id, ns, cached=False)
            return None if stored is None else self._tuples(stored)[0]

    async def search(
        self,
        config: RunnableConfig | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        listing = _listing(config, filter, before, limit)
        if listing.limit == 0:
            return
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            rows = await repo.search(query(listing, uow.scope.dialect))
            found = self._tuples(await repo.stored(rows))
        for item in found:  # sync: yield from found
            yield item  # sync:

    def _tuples(self, stored: Stored) -> list[CheckpointTuple]:
        """Checkpoint tuples of what was read, every checksum verified."""
        serde, rows = self.serde, stored.rows
        checkpoints = [serial.checkpoint_of(serde, r, _what(r)) for r in rows]
        values: dict[tuple[str, str, str, str], Any] = {}
        for b in stored.blobs:
            blob = serial.Blob(b.digest, b.type, b.codec, b.value)
            what = f"channel {b.channel!r} of thread {b.thread_id!r}"
            values[(b.thread_id, b.checkpoint_ns, b.channel, b.version)] = serial.blob_value(
                serde, blob, what
            )
        writes: dict[tuple[str, str, str], list[Any]] = {}
        for w in stored.writes:
            value = serial.write_value(serde, w, f"write of task {w.task_id!r}")
            key = (w.thread_id, w.checkpoint_ns, w.checkpoint_id)
            writes.setdefault(key, []).append((w.task_id, w.channel, value))
        found = []
        for r, cp in zip(rows, checkpoints, strict=True):
            for ch, v in serial.missing_channels(cp):
                value = values.get((r.thread_id, r.checkpoint_ns, ch, v), _EMPTY)
                if value is not _EMPTY:
                    cp["channel_values"][ch] = value
            found.append(
                _tuple(r, cp, writes.get((r.thread_id, r.checkpoint_ns, r.checkpoint_id), []))
            )
        return found

    # -- writes -----------------------------------------------------------------------

    async def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _thread(config)
        checkpoint_id = serial.validate_id(checkpoint.get("id"), "checkpoint id")
        parent = get_checkpoint_id(config)
        parent_id = None if parent is None else serial.validate_id(parent, "parent checkpoint id")
        meta = serial.metadata_json(get_serializable_checkpoint_metadata(config, metadata))
        row = _guarded(
            serial.split_checkpoint, self.serde, checkpoint, new_versions, self._encoding
        )
        fenced = self._single_writer and not (
            parent_id is not None and (thread_id, ns, parent_id) in self._addressed
        )
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            await repo.put(
                thread_id,
                ns,
                checkpoint_id,
                parent_id,
                row,
                meta,
                fenced=fenced,
                holder=self._holder,
            )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }

    async def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread_id, ns = _thread(config)
        checkpoint_id = serial.validate_id(get_checkpoint_id(config), "checkpoint_id")
        rows, blobs = _guarded(
            serial.write_rows, self.serde, writes, task_id, task_path, self._encoding
        )
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            await repo.put_writes(thread_id, ns, checkpoint_id, rows, blobs)

    async def delete_thread(self, thread_id: str) -> None:
        thread = serial.validate_id(thread_id, "thread_id")
        async with self._unit() as uow:
            await AsyncCheckpointRepository(uow.scope).delete_threads([thread])

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = serial.validate_id(source_thread_id, "source thread_id")
        target = serial.validate_id(target_thread_id, "target thread_id")
        if source == target:
            raise InvalidInputError("copy_thread needs two different threads")
        async with self._unit() as uow:
            await AsyncCheckpointRepository(uow.scope).copy(source, target)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = [serial.validate_id(r, "run_id") for r in _strings(run_ids, "run_ids")]
        if not runs:
            return
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            doomed = await repo.of_runs(runs)
            threads = sorted({thread for thread, _, _ in doomed})
            await repo.lock_threads(threads)
            by_ns: dict[tuple[str, str], list[str]] = {}
            for thread, ns, checkpoint_id in doomed:
                by_ns.setdefault((thread, ns), []).append(checkpoint_id)
            for (thread, ns), ids in sorted(by_ns.items()):
                await repo.delete_checkpoints(thread, ns, ids)

    async def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        threads = [serial.validate_id(t, "thread_id") for t in _strings(thread_ids, "thread_ids")]
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError(
                f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'"
            )
        if not threads:
            return
        async with self._unit() as uow:
            repo = AsyncCheckpointRepository(uow.scope)
            if strategy == "delete":
                await repo.delete_threads(threads)
                return
            for thread, ns in sorted(await repo.lock_threads(threads)):
                chain = await repo.chain(thread, ns)
                keep = keep_set(chain)
                await repo.delete_checkpoints(
                    thread, ns, [c.checkpoint_id for c in chain.rows if c.checkpoint_id not in keep]
                )

    def _remember(self, thread_id: str, ns: str, checkpoint_id: str) -> None:
        key = (thread_id, ns, checkpoint_id)
        self._addressed[key] = None
        self._addressed.move_to_end(key)
        while len(self._addressed) > ADDRESSED:
            self._addressed.popitem(last=False)


_EMPTY = object()


def _guarded(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with what LangGraph's serializer raises for a value it cannot
    serialize turned into InvalidTypeError, before anything is written."""
    try:
        return fn(*args)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, (InvalidInputError, InvalidTypeError)):
            raise
        raise InvalidTypeError(f"cannot serialize the checkpoint: {exc}") from exc


def _strings(values: Any, what: str) -> list[Any]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidTypeError(f"{what} must be a sequence of str")
    return list(values)


def _thread(config: RunnableConfig | None) -> tuple[str, str]:
    configurable = (config or {}).get("configurable") or {}
    if "thread_id" not in configurable:
        raise InvalidInputError("the config has no configurable.thread_id")
    thread_id = serial.validate_id(configurable["thread_id"], "thread_id")
    ns = serial.validate_id(
        configurable.get("checkpoint_ns", ""), "checkpoint_ns", max_length=2048, empty=True
    )
    return thread_id, ns


def _listing(
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Listing:
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    ns = configurable.get("checkpoint_ns")
    checkpoint_id = configurable.get("checkpoint_id")
    before_id = get_checkpoint_id(before) if before else None
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidInputError(f"limit must be an int >= 0, not {limit!r}")
    if filter is not None and not isinstance(filter, Mapping):
        raise InvalidTypeError("filter must be a mapping of metadata keys to values")
    return Listing(
        thread_id=None if thread_id is None else serial.validate_id(thread_id, "thread_id"),
        ns=None
        if ns is None
        else serial.validate_id(ns, "checkpoint_ns", max_length=2048, empty=True),
        checkpoint_id=None
        if checkpoint_id is None
        else serial.validate_id(checkpoint_id, "checkpoint_id"),
        before=None if before_id is None else serial.validate_id(before_id, "before checkpoint_id"),
        filter=dict(filter or {}),
        limit=limit,
    )


def _what(row: Any) -> str:
    return f"checkpoint {row.checkpoint_id!r} of thread {row.thread_id!r}"


def _config(row: Any, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _tuple(row: Any, checkpoint: Checkpoint, writes: list[Any]) -> CheckpointTuple:
    return CheckpointTuple(
        config=_config(row, row.checkpoint_id),
        checkpoint=checkpoint,
        metadata=orjson.loads(row.metadata),
        parent_config=_config(row, row.parent_id) if row.parent_id else None,
        pending_writes=writes,
    )
