"""Export, import and diff of one tenant scope, as a list of per-aggregate sections."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from persistence.transfer._files import SectionReader, SectionWriter, TransferError, dump_json_file

if TYPE_CHECKING:
    from persistence.database import Database
    from persistence.uow import UnitOfWork

__all__ = [
    "DiffEntry",
    "ImportReport",
    "Section",
    "diff_scope",
    "export_scope",
    "import_scope",
    "sections",
]

FORMAT = "persistence-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class Section(Protocol):
    """One aggregate's part of an export directory (``<root>/<name>/``).

    A module ``persistence.transfer.<x>`` defines ``SECTION`` and is listed once in
    ``persistence.transfer.SECTION_MODULES``.
    """

    name: str

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        """Write every object of the scope (stable names and bytes: reviewable in git)."""

    def read(self, src: SectionReader) -> Any:
        """Read and validate every file; raise TransferError naming the first bad file.
        Must not touch the database."""

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        """Write the validated objects idempotently; return how many were written."""

    def digests(self, validated: Any) -> dict[str, str]:
        """``{object key: digest}`` of what the directory holds."""

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        """``{object key: digest}`` of what the scope holds (same keys and digests)."""


def sections() -> list[Section]:
    from persistence.transfer import SECTION_MODULES

    found = [importlib.import_module(f"persistence.transfer.{m}").SECTION for m in SECTION_MODULES]
    return [s for s in found if s is not None]


@dataclass(frozen=True)
class DiffEntry:
    """One object that differs: ``status`` says where it is, ``key`` what it is."""

    section: str
    key: str
    status: Literal["only_in_directory", "only_in_database", "different"]


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote (or, with ``dry_run``, would write) per section."""

    dry_run: bool
    objects: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.written.values())


def export_scope(db: Database, tenant: str, workspace: str, dest: str | os.PathLike[str]) -> None:
    """Write the scope to the directory ``dest`` (created; or replaced if it holds an
    earlier export; refused if it holds anything else).

    Raises NotFoundError (unknown tenant/workspace), TransferError (unusable ``dest``).
    """
    root = Path(dest)
    _prepare_destination(root)
    root = root.resolve()
    # One snapshot for every section: a concurrent writer cannot leave the export with a
    # run whose workflow, or a checkpoint whose version, is missing from it.
    with db.unit_of_work(tenant, workspace, read_only=True) as uow:
        names = []
        for section in sections():
            section.export(uow, SectionWriter(root, section.name))
            names.append(section.name)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "sections": sorted(names)}
    SectionWriter(root.parent, root.name).write((MANIFEST,), dump_json_file(manifest))


def _prepare_destination(root: Path) -> None:
    if root.is_symlink():
        raise TransferError(str(root), "is a symlink; export to a real directory")
    if not root.exists():
        root.mkdir(parents=True)
        return
    if not root.is_dir():
        raise TransferError(str(root), "exists and is not a directory")
    entries = {entry.name for entry in root.iterdir()}
    if not entries:
        return
    if MANIFEST not in entries:
        raise TransferError(str(root), "is not empty and holds no earlier export")
    for section in sections():  # replace our own directories, keep the rest (.git, ...)
        path = root / section.name
        if path.is_symlink():
            raise TransferError(str(path), "is a symlink; refusing to delete through it")
        if path.exists():
            shutil.rmtree(path)


def _read_directory(src: str | os.PathLike[str]) -> list[tuple[Section, Any]]:
    root = Path(src)
    if root.is_symlink() or not root.is_dir():
        raise TransferError(str(root), "must be a directory (not a symlink)")
    root = root.resolve()
    manifest = SectionReader(root.parent, root.name).read_json((MANIFEST,))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TransferError(MANIFEST, f"is not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise TransferError(MANIFEST, f"format version {manifest.get('version')!r} unsupported")
    known = sections()
    listed = manifest.get("sections")
    unknown = set(listed or ()) - {s.name for s in known}
    if not isinstance(listed, list) or unknown:
        raise TransferError(MANIFEST, f"lists sections this version cannot import: {unknown}")
    return [(s, s.read(SectionReader(root, s.name))) for s in known]


class _DryRun(Exception):
    pass


def import_scope(
    db: Database,
    tenant: str,
    workspace: str,
    src: str | os.PathLike[str],
    *,
    dry_run: bool = False,
) -> ImportReport:
    """Validate every file of ``src``, then write it all in one unit of work.

    All or nothing: any invalid file raises TransferError (naming it) before anything
    is written; a conflicting object (same name or version, different content) raises
    ConflictError and rolls everything back. Importing the same directory again writes
    nothing. ``dry_run`` does the writes and rolls them back.
    """
    validated = _read_directory(src)
    report = ImportReport(dry_run=dry_run)
    try:
        with db.unit_of_work(tenant, workspace) as uow:
            for section, data in validated:
                report.objects[section.name] = len(section.digests(data))
                report.written[section.name] = section.apply(uow, data)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def diff_scope(
    db: Database, tenant: str, workspace: str, src: str | os.PathLike[str]
) -> list[DiffEntry]:
    """Objects only in ``src``, only in the scope, or in both with different digests
    (content checksum and metadata), sorted by section and key. Empty when equal."""
    validated = _read_directory(src)
    entries: list[DiffEntry] = []
    with db.unit_of_work(tenant, workspace, read_only=True) as uow:
        for section, data in validated:
            entries += _compare(section.name, section.digests(data), section.database_digests(uow))
    return entries


def _compare(name: str, mine: Mapping[str, str], theirs: Mapping[str, str]) -> list[DiffEntry]:
    out: list[DiffEntry] = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            out.append(DiffEntry(name, key, "only_in_directory"))
        elif key not in mine:
            out.append(DiffEntry(name, key, "only_in_database"))
        elif mine[key] != theirs[key]:
            out.append(DiffEntry(name, key, "different"))
    return out


def all_pages(fetch: Any, *args: Any) -> Sequence[Any]:
    """Every item of a paginated listing ``fetch(*args, limit=, cursor=)``."""
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(*args, limit=500, cursor=cursor)
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items
