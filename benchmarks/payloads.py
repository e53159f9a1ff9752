"""The payloads every side of a comparison uses (deterministic, so runs compare)."""

from __future__ import annotations

import random
from typing import Any


def agent_state(seed: int = 7) -> dict[str, Any]:
    """A typical agent state: a short conversation, a plan and a few counters (~2 KiB)."""
    rng = random.Random(seed)
    words = ["plan", "search", "tool", "answer", "context", "user", "agent", "result", "step"]

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    return {
        "thread": "thread-0001",
        "step": 12,
        "messages": [
            {"role": rng.choice(["user", "assistant", "tool"]), "content": sentence(18), "n": i}
            for i in range(8)
        ],
        "plan": [{"task": sentence(5), "done": i % 2 == 0, "cost": i * 0.25} for i in range(5)],
        "scratch": {"retries": 2, "temperature": 0.7, "tools": ["search", "python"]},
        "done": False,
    }


def blob(size: int, seed: int = 11) -> bytes:
    """Incompressible bytes (compression must not flatter either side)."""
    return random.Random(seed).randbytes(size)
