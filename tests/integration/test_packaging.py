"""A wheel (what a non-editable install ships) carries every package and the migrations.

The Alembic environment lives at the top level (``migrations/``, beside alembic.ini);
pyproject.toml maps it into the wheel as ``persistence/_migrations``. The wheel is built
from a copy of the sources, so no build/ or egg-info appears in the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("persistence", "migrations"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
        check=True,
        cwd=base,
        timeout=120,
    )
    (built,) = out.glob("persistence-*.whl")
    return built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_the_migrations(wheel: Path) -> None:
    names = _names(wheel)
    expected = {"persistence/_migrations/env.py", "persistence/_migrations/script.py.mako"}
    expected |= {
        f"persistence/_migrations/versions/{p.name}"
        for p in (ROOT / "migrations" / "versions").glob("*.py")
    }
    assert expected <= names, sorted(expected - names)
    assert not any(n.startswith("migrations/") for n in names), "no top-level migrations"


def test_wheel_ships_every_module(wheel: Path) -> None:
    # pyproject.toml lists the packages: a new package directory must be added there.
    names = _names(wheel)
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "persistence").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, sorted(modules - names)
    assert "persistence/py.typed" in names


def test_migrate_from_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    script = (
        "import persistence.migrations as m\n"
        "from persistence import Database\n"
        "print(m._script_location())\n"
        f"db = Database.from_url('sqlite:///{tmp_path / 'wheel.sqlite3'}')\n"
        "db.migrate()\n"
        "print(db.current_revision() == m.head())\n"
        "db.close()\n"
    )
    # The unpacked wheel comes first on sys.path, ahead of the editable install.
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PERSISTENCE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    location, at_head = done.stdout.split()
    assert Path(location) == site / "persistence" / "_migrations"
    assert at_head == "True"
