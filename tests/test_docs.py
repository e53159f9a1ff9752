"""Every ```python block in docs/ and the README runs, in order, page by page.

Each page runs in a fresh namespace, in a temporary directory, against a fresh
embedded SQLite database (``PERSISTENCE_DATABASE_URL``). A block whose fence is
```python no-run is shown to readers but not executed (for PostgreSQL-only set-up).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"])
_BLOCK = re.compile(r"^```python[ \t]*(?P<flags>[^\n]*)\n(?P<code>.*?)^```", re.M | re.S)


def blocks(page: Path) -> list[str]:
    return [m["code"] for m in _BLOCK.finditer(page.read_text()) if "no-run" not in m["flags"]]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERSISTENCE_DATABASE_URL", f"sqlite:///{tmp_path / 'docs.sqlite3'}")
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for index, code in enumerate(blocks(page)):
        try:
            exec(compile(code, f"{page.name}[block {index}]", "exec", dont_inherit=True), namespace)
        except Exception as exc:
            pytest.fail(f"{page.name} block {index} failed: {type(exc).__name__}: {exc}")
