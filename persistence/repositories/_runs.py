"""Helpers of the run repository: input validation, the status machine table, payloads,
records and cursors (kept apart so the repository module reads as its public API)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy.engine import Row

from persistence import _cursor, codecs
from persistence.errors import InvalidInputError, InvalidTypeError
from persistence.models.base import utcnow
from persistence.models.runs import Run, RunHistory
from persistence.records import RunHistoryRecord, RunRecord
from persistence.settings import Settings
from persistence.validation import count, matching, validate_text

__all__ = ["ALLOWED_FROM", "FINISHED", "HISTORY_COLUMNS", "RUN_COLUMNS"]

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
HISTORY_COLUMNS = (
    RunHistory.run_id,
    RunHistory.seq,
    RunHistory.status,
    RunHistory.at,
    RunHistory.worker,
    RunHistory.note,
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def run_id(value: object, what: str = "run id") -> str:
    """A caller-chosen run id: 1-128 characters of ``A-Za-z0-9._:@-``."""
    rule = "1-128 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit"
    return matching(value, _ID, what, rule)


def status(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(f"run status must be a str, not {type(value).__name__}")
    if value not in ALLOWED_FROM:
        raise InvalidInputError(f"unknown run status {value!r}; use one of {tuple(ALLOWED_FROM)}")
    return value


def text(value: object, what: str, max_len: int) -> str | None:
    """``None`` or a str of 1-``max_len`` characters."""
    return None if value is None else validate_text(value, what, max_length=max_len)


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
        try:
            return utcnow() + value
        except OverflowError:
            raise InvalidInputError(f"{what} is out of range: {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidTypeError(f"{what} must be a datetime or timedelta")
    if value.tzinfo is None:
        raise InvalidInputError(f"{what} must be timezone-aware")
    return value


def ago(value: datetime | timedelta, what: str) -> datetime:
    """An aware datetime, or now minus a timedelta."""
    try:
        return when(-value if isinstance(value, timedelta) else value, what)
    except OverflowError:  # -timedelta.max and -timedelta.min do not exist
        raise InvalidInputError(f"{what} is out of range: {value!r}") from None


def statuses(values: object) -> list[str]:
    """Distinct statuses, sorted, from an iterable (not a str) of them."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidTypeError("statuses must be an iterable of run statuses (not a str)")
    return sorted({status(value) for value in values})


def factory(value: object) -> Callable[[], Any]:
    if not callable(value):
        raise InvalidTypeError(f"factory must be callable, not {type(value).__name__}")
    return value


def message(exc: BaseException) -> str:
    """``str(exc)``, or what the traceback module shows when that raises."""
    try:
        return str(exc)
    except Exception:  # a __str__ that raises (or an int past str()'s digit limit)
        return "<exception str() failed>"


def type_name(exc: BaseException) -> str:
    """``module.QualName`` of the exception's class (builtins without the module)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"[:500]


def pack(value: object, what: str, settings: Settings) -> codecs.Encoded:
    raw = codecs.dump_json(value, what=what, max_depth=settings.max_json_depth)
    return codecs.encode(raw, codec=settings.compression, threshold=settings.compression_threshold)


def unpack(payload: bytes, codec: str, checksum: str, what: str) -> Any:
    raw = codecs.decode(payload, codec=codec, expected_checksum=checksum, what=what)
    return codecs.decode_json(raw, what=what)


def canonical(value: object) -> bytes:
    """JSON with sorted keys: equal for equal values whatever their key order."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def run_record(row: Any) -> RunRecord:
    """The record of a row with the columns of :data:`RUN_COLUMNS` (by name)."""
    rid = row.id
    return RunRecord.from_row(
        row,
        args=unpack(row.args, row.args_codec, row.args_checksum, f"args of run {rid!r}"),
        tags=tuple(codecs.decode_json(row.tags, what=f"tags of run {rid!r}")),
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
    return _cursor.encode_cursor(created_at.isoformat(), run)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    created, run = _cursor.decode_cursor(cursor, [str, str]) or ("", "")
    try:
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or not _ID.fullmatch(run):
            raise ValueError("not a run cursor")
    except ValueError:
        raise InvalidInputError(f"invalid cursor {cursor!r:.60}") from None
    return at, run


def limit(value: object) -> int:
    return count(value, "limit", minimum=1, maximum=10_000)
