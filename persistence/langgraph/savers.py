"""LangGraph checkpointers on persistence: :class:`PersistenceSaver` on a
:class:`~persistence.Database`, :class:`AsyncPersistenceSaver` on an
:class:`~persistence.AsyncDatabase`. See docs/langgraph.md."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from persistence.codecs import validate_codec
from persistence.langgraph._loop import LoopBound
from persistence.langgraph._saver import Checkpointer
from persistence.langgraph._saver_async import AsyncCheckpointer
from persistence.langgraph._serial import Encoding
from persistence.settings import Settings
from persistence.validation import validate_slug

if TYPE_CHECKING:
    from persistence.database import Database
    from persistence.database_async import AsyncDatabase

__all__ = ["AsyncPersistenceSaver", "PersistenceSaver"]


def _encoding(settings: Settings, compression: str | None) -> Encoding:
    """The codec: ``compression`` if given, else the database's ``compression`` setting,
    else (that setting left at ``none``) zstd: checkpoints repeat much of themselves."""
    if compression is not None:
        codec = validate_codec(compression)
    else:
        codec = settings.compression if settings.compression != "none" else "zstd"
    return Encoding(codec, settings.compression_threshold)


def next_version(current: str | int | None) -> str:
    """A channel's next version: a counter, zero-padded so versions compare as text, and
    a short random suffix (two branches of a thread never share a version). Ours are 15
    characters (``0000000003.9f1c``); LangGraph's own savers write 49, a cost paid in
    every checkpoint for every channel and for every node that saw one. A channel whose
    versions came in LangGraph's long form (a thread copied from its saver) goes on in
    that form, so that its versions keep comparing in order."""
    if current is None:
        counter, wide = 0, False
    elif isinstance(current, int):
        counter, wide = current, False
    else:
        head = current.split(".")[0]
        counter, wide = int(head), len(head) > _COUNTER
    if wide:
        return f"{counter + 1:032}.{random.random():016}"
    return f"{counter + 1:0{_COUNTER}}.{random.getrandbits(16):04x}"


_COUNTER = 10  # digits of our counter


class _Saver(BaseCheckpointSaver[str]):
    """What both savers share: the core they call (sync or async), its options, the
    version scheme, and a clone with another serializer allowlist."""

    _core: Any

    def _open(
        self,
        core: type[Any],
        db: Any,
        tenant: str,
        workspace: str,
        single_writer: bool,
        compression: str | None,
    ) -> None:
        self._core = core(
            db,
            validate_slug(tenant, what="tenant slug"),
            validate_slug(workspace, what="workspace slug"),
            self.serde,
            _encoding(db.settings, compression),
            single_writer=single_writer,
        )

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> Self:
        clone = super().with_allowlist(extra_allowlist)
        if clone is not self:
            assert isinstance(clone, type(self))
            clone._core = copy.copy(self._core)
            clone._core.serde = clone.serde
        return clone

    def get_next_version(self, current: str | None, channel: None) -> str:
        return next_version(current)


class PersistenceSaver(_Saver):
    """A LangGraph checkpointer storing one tenant's threads in one workspace.

    ``single_writer`` (on by default): a checkpoint is written only as the continuation
    of its thread's head, so of two workers resuming one thread the stale one gets
    :class:`~persistence.errors.StaleFenceError` instead of forking the thread; a put
    branching from a checkpoint this saver was asked for by id (time travel) is a
    deliberate fork and allowed. ``compression``: a codec of :mod:`persistence.codecs`
    for checkpoints, blobs and writes of ``compression_threshold`` bytes or more
    (default: the database's ``compression`` setting, zstd when that is ``none``).
    """

    _core: Checkpointer

    def __init__(
        self,
        db: Database,
        *,
        tenant: str,
        workspace: str = "default",
        serde: SerializerProtocol | None = None,
        single_writer: bool = True,
        compression: str | None = None,
    ):
        super().__init__(serde=serde)
        self._open(Checkpointer, db, tenant, workspace, single_writer, compression)

    # -- sync: the database's own calls -------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._core.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._core.search(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._core.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._core.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._core.delete_thread(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._core.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._core.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._core.prune(thread_ids, strategy=strategy)

    # -- async: the sync calls on a worker thread ---------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


class AsyncPersistenceSaver(_Saver):
    """:class:`PersistenceSaver` on an :class:`~persistence.AsyncDatabase`: the same
    options, the async methods native. Its sync methods run on the event loop the saver
    was first used on, from another thread only (as LangGraph's own async savers)."""

    _core: AsyncCheckpointer

    def __init__(
        self,
        db: AsyncDatabase,
        *,
        tenant: str,
        workspace: str = "default",
        serde: SerializerProtocol | None = None,
        single_writer: bool = True,
        compression: str | None = None,
    ):
        super().__init__(serde=serde)
        self._open(AsyncCheckpointer, db, tenant, workspace, single_writer, compression)
        self._bound = LoopBound("AsyncPersistenceSaver")

    def _seen(self) -> None:
        self._bound.seen()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._seen()
        return await self._core.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        self._seen()
        async for item in self._core.search(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._seen()
        return await self._core.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._seen()
        await self._core.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self._seen()
        await self._core.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._seen()
        await self._core.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._seen()
        await self._core.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._seen()
        await self._core.prune(thread_ids, strategy=strategy)

    # -- sync: on the saver's event loop, from another thread ----------------------------

    def _call(self, coro: Any) -> Any:
        return self._bound.call(coro)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._call(self.aget_tuple(config))  # type: ignore[no-any-return]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._call(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        coro = self.aput(config, checkpoint, metadata, new_versions)
        return self._call(coro)  # type: ignore[no-any-return]

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._call(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._call(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._call(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._call(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._call(self.aprune(thread_ids, strategy=strategy))
