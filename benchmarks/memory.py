"""Peak RSS of a large artifact round trip (save, then load), each side in a fresh process.

The child measures ``ru_maxrss`` (the process's peak resident set) after imports and
a small warm-up round trip, then saves ``size`` incompressible bytes in one unit of
work, drops its own copy, loads them back in another and checks the SHA-256. The
figure is (peak - baseline) / size, so the caller's own copy of the data (1x, alive
while saving and again once loaded) is included: the floor is 1x.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.env import BenchEnv

if TYPE_CHECKING:
    from benchmarks.report import Profile


@dataclass
class MemoryResult:
    size: int
    ours: float | None = None  # peak above baseline / size
    raw: float | None = None  # the same for raw psycopg (INSERT / SELECT of a bytea)
    error: str | None = None


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _child(env: BenchEnv, side: str, size: int) -> dict[str, Any]:
    from benchmarks.payloads import blob

    if side == "ours":
        db = env.database()

        def save(name: str, data: bytes) -> None:
            with db.unit_of_work(env.tenant) as uow:
                uow.artifacts.save(name, data)

        def load(name: str) -> bytes:
            with db.unit_of_work(env.tenant) as uow:
                loaded = uow.artifacts.load(name)
            if not isinstance(loaded, bytes):
                raise TypeError(f"artifact loaded as {type(loaded).__name__}, not bytes")
            return loaded
    else:
        save, load = _raw_functions(env)
    save("warm", b"x" * 1024)
    load("warm")
    baseline = _maxrss()
    data = blob(size)
    digest = hashlib.sha256(data).digest()
    save("big", data)
    del data
    loaded = load("big")
    if hashlib.sha256(loaded).digest() != digest:
        raise RuntimeError("the artifact did not round-trip")
    del loaded
    return {"baseline": baseline, "peak": _maxrss()}


def _raw_functions(env: BenchEnv) -> tuple[Any, Any]:
    import psycopg

    # A plain bytea table of the owner's: the driver's own cost, nothing of ours.
    conn = psycopg.connect(env.owner_dsn, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS raw_blobs (name text PRIMARY KEY, data bytea)")

    def save(name: str, data: bytes) -> None:
        with conn.transaction():
            conn.execute(
                "INSERT INTO raw_blobs VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET data = excluded.data",
                (name, data),
            )

    def load(name: str) -> bytes:
        # A binary cursor: in text format the bytea would arrive hex-encoded (2x).
        with conn.transaction(), conn.cursor(binary=True) as cursor:
            row = cursor.execute("SELECT data FROM raw_blobs WHERE name = %s", (name,)).fetchone()
        assert row is not None
        return bytes(row[0])

    return save, load


def run(env: BenchEnv, profile: Profile) -> MemoryResult:
    size = profile.memory_bytes
    result = MemoryResult(size=size)
    print(f"  memory: {size >> 20} MiB artifact round trip", file=sys.stderr, flush=True)
    for side in ("ours", "raw"):
        try:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", side, str(size)],
                input=json.dumps(env.__dict__),
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = (figures["peak"] - figures["baseline"]) / size
            setattr(result, side, ratio)
        except Exception as exc:
            stderr = getattr(exc, "stderr", "") or ""
            print(stderr, file=sys.stderr)
            result.error = f"{side}: {type(exc).__name__}: {stderr.strip().splitlines()[-1:]}"
    return result


if __name__ == "__main__":
    try:
        env = BenchEnv(**json.loads(sys.stdin.read()))
        print(json.dumps(_child(env, sys.argv[1], int(sys.argv[2]))))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
