"""Safe file access for export and import: no path leaves its root, no symlink is followed."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from persistence.errors import InvalidInputError

__all__ = ["SectionReader", "SectionWriter", "TransferError", "decode_segment", "encode_segment"]

# Segments longer than this (encoded, in bytes) are replaced by a hash: filesystems cap a
# file name at 255 bytes. The original name is always kept inside the metadata file.
_MAX_SEGMENT = 200


class TransferError(InvalidInputError):
    """An export directory (or a file in it) is unusable; the message names the file."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


def encode_segment(segment: str) -> str:
    """One name segment as one portable file name: percent-encoded except letters,
    digits and ``-._~``; ``@`` and ``%`` are always encoded (``@`` marks our own
    suffixes and hashed segments), and ``.``/``..`` cannot occur."""
    encoded = quote(segment, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    if len(encoded.encode()) > _MAX_SEGMENT:
        encoded = "@h-" + hashlib.sha256(segment.encode()).hexdigest()
    return encoded


def decode_segment(encoded: str) -> str | None:
    """The segment ``encoded`` stands for, or None for a hashed segment (its name is in
    the metadata); callers check ``encode_segment(name) == encoded``."""
    return None if encoded.startswith("@h-") else unquote(encoded, errors="strict")


def _check_part(part: str) -> None:
    if part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise InvalidInputError(f"refusing the unsafe path component {part!r}")


def dump_json_file(value: Any) -> bytes:
    """Stable, reviewable JSON: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class SectionWriter:
    """Writes the files of one section under ``root/<section>``; never outside it."""

    def __init__(self, root: Path, section: str):
        _check_part(section)
        self.root = root
        self.base = root / section

    def write(self, parts: tuple[str, ...], data: bytes) -> None:
        for part in parts:
            _check_part(part)
        path = self.base.joinpath(*parts)
        current = self.root
        for part in path.relative_to(self.root).parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise TransferError(str(current), "is a symlink; refusing to write through it")
            current.mkdir(exist_ok=True)
        # O_NOFOLLOW: a symlink planted at the final name is refused, not followed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def write_json(self, parts: tuple[str, ...], value: Any) -> None:
        self.write(parts, dump_json_file(value))


class SectionReader:
    """Lists and reads the regular files under ``root/<section>``.

    Symlinks (to files or directories) and other special files are refused with the
    offending path; nothing outside the root is ever opened.
    """

    def __init__(self, root: Path, section: str):
        _check_part(section)
        self.root = root
        self.section = section
        self.base = root / section

    def rel(self, parts: tuple[str, ...]) -> str:
        return "/".join((self.section, *parts))

    def fail(self, parts: tuple[str, ...], reason: str) -> TransferError:
        return TransferError(self.rel(parts), reason)

    def files(self) -> list[tuple[str, ...]]:
        """Every file as path parts relative to the section directory, sorted."""
        if not os.path.lexists(self.base):
            return []
        if self.base.is_symlink() or not self.base.is_dir():
            raise TransferError(self.section, "must be a directory, not a symlink or file")
        found: list[tuple[str, ...]] = []
        for dirpath, dirnames, filenames in os.walk(self.base, followlinks=False):
            rel = Path(dirpath).relative_to(self.base).parts
            for name in dirnames + filenames:
                mode = os.lstat(os.path.join(dirpath, name)).st_mode
                if stat.S_ISLNK(mode):
                    raise self.fail((*rel, name), "is a symlink; refusing to follow it")
                if name in filenames and not stat.S_ISREG(mode):
                    raise self.fail((*rel, name), "is not a regular file")
            found.extend((*rel, name) for name in filenames)
        return sorted(found)

    def read(self, parts: tuple[str, ...]) -> bytes:
        for part in parts:
            _check_part(part)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.base.joinpath(*parts), flags)
        except OSError as exc:
            raise self.fail(parts, f"cannot be read: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def read_json(self, parts: tuple[str, ...]) -> Any:
        try:
            return json.loads(self.read(parts))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.fail(parts, f"is not valid JSON: {exc}") from None
