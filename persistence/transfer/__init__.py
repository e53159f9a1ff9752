"""Export, import and diff of one tenant scope as a reviewable directory tree.

Each aggregate contributes one section module defining ``SECTION`` (see
:class:`persistence.transfer.Section`); add yours with one line in ``SECTION_MODULES``.
"""

from persistence.transfer._core import (
    DiffEntry,
    ImportReport,
    Section,
    diff_scope,
    export_scope,
    import_scope,
)
from persistence.transfer._files import SectionReader, SectionWriter, TransferError

__all__ = [
    "SECTION_MODULES",
    "DiffEntry",
    "ImportReport",
    "Section",
    "SectionReader",
    "SectionWriter",
    "TransferError",
    "diff_scope",
    "export_scope",
    "import_scope",
]

#: The section modules under persistence/transfer/, in import order (one line each).
SECTION_MODULES: tuple[str, ...] = (
    "workflows",
    "artifacts",
    "states",
    "stores",
    "runs",
)
