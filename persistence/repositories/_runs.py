"""Helpers of the run repository: input validation, the status machine table, payloads,
records and cursors (kept apart so the repository module reads as its public API)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy.engine import Row

from persistence import codecs
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.base import utcnow
from persistence.models.runs import Run
from persistence.records import RunHistoryRecord, RunRecord
from persistence.settings import Settings

__all__ = ["ALLOWED_FROM", "FINISHED", "RUN_COLUMNS"]

#: For each target status, the statuses a run may move to it from. ``pending`` is only
#: ever the initial status.
ALLOWED_FROM: Mapping[str, tuple[str, ...]] = {
    "pending": (),
    "running": ("pending", "retrying"),
    "succeeded": ("running",),
    "failed": ("running",),
    "retrying": ("running",),
    "cancelled": ("pending", "running"),
}
FINISHED = ("succeeded", "failed", "cancelled")
RUN_COLUMNS = (
    Run.id,
    Run.workflow,
    Run.status,
    Run.args,
    Run.args_codec,
    Run.args_checksum,
    Run.tags,
    Run.parent_run_id,
    Run.worker,
    Run.attempts,
    Run.not_before,
    Run.created_at,
    Run.updated_at,
    Run.history_seq,
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def run_id(value: object, what: str = "run id") -> str:
    """A caller-chosen run id: 1-128 characters of ``A-Za-z0-9._:@-``."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not _ID.fullmatch(value):
        raise InvalidInputError(
            f"invalid {what} {value!r}: 1-128 characters of A-Z a-z 0-9 . _ : @ -, "
            "starting with a letter or digit"
        )
    return value


def status(value: object) -> str:
    if value not in ALLOWED_FROM:
        raise InvalidInputError(f"unknown run status {value!r}; use one of {tuple(ALLOWED_FROM)}")
    return cast(str, value)


def text(value: object, what: str, max_len: int) -> str | None:
    """``None`` or a str of 1-``max_len`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value or len(value) > max_len:
        raise InvalidInputError(f"{what} must be 1-{max_len} characters")
    if "\x00" in value or _unstorable(value):
        raise InvalidInputError(f"{what} must not contain NUL or lone surrogates")
    return value


def _unstorable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable(value: str) -> str:
    """``value`` with what no database text column can hold (NUL, lone surrogates)
    escaped, for free text we must keep rather than refuse (exception messages)."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def required_text(value: object, what: str, max_len: int) -> str:
    if value is None:
        raise InvalidTypeError(f"{what} must be a str, not None")
    return cast(str, text(value, what, max_len))


def tags(values: Iterable[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidTypeError("tags must be an iterable of str (not a single str)")
    out: list[str] = []
    for tag in values:
        checked = required_text(tag, "tag", 100)
        if checked not in out:
            out.append(checked)
    return out


def when(value: datetime | timedelta, what: str) -> datetime:
    """An aware datetime, or now plus a timedelta."""
    if isinstance(value, timedelta):
        return utcnow() + value
    if not isinstance(value, datetime):
        raise InvalidTypeError(f"{what} must be a datetime or timedelta")
    if value.tzinfo is None:
        raise InvalidInputError(f"{what} must be timezone-aware")
    return value


def ago(value: datetime | timedelta, what: str) -> datetime:
    """An aware datetime, or now minus a timedelta."""
    return when(-value if isinstance(value, timedelta) else value, what)


def type_name(exc: BaseException) -> str:
    """``module.QualName`` of the exception's class (builtins without the module)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"[:500]


def pack(value: object, what: str, settings: Settings) -> codecs.Encoded:
    raw = codecs.dump_json(value, what=what)
    return codecs.encode(raw, codec=settings.compression, threshold=settings.compression_threshold)


def unpack(payload: bytes, codec: str, checksum: str, what: str) -> Any:
    raw = codecs.decode(payload, codec=codec, expected_checksum=checksum, what=what)
    return codecs.decode_json(raw)


def canonical(value: object) -> bytes:
    """JSON with sorted keys: equal for equal values whatever their key order."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def run_record(row: Any) -> RunRecord:
    """The record of a row with the columns of :data:`RUN_COLUMNS` (by name)."""
    rid = row.id
    return RunRecord.of(
        id=rid,
        workflow=row.workflow,
        status=row.status,
        args=unpack(row.args, row.args_codec, row.args_checksum, f"args of run {rid!r}"),
        tags=tuple(orjson.loads(row.tags)),
        parent_run_id=row.parent_run_id,
        worker=row.worker,
        attempts=row.attempts,
        not_before=row.not_before,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def history_record(row: Row[Any]) -> RunHistoryRecord:
    m = row._mapping
    return RunHistoryRecord.model_construct(
        run_id=m["run_id"],
        seq=m["seq"],
        status=m["status"],
        at=m["at"],
        worker=m["worker"],
        note=m["note"],
    )


def encode_cursor(created_at: datetime, run: str) -> str:
    raw = orjson.dumps([created_at.isoformat(), run])
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, run = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), run_id(run)
    except Exception as exc:
        raise InvalidInputError(f"invalid cursor {cursor!r}") from exc


def limit(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
        raise InvalidInputError("limit must be an int from 1 to 10000")
    return value
