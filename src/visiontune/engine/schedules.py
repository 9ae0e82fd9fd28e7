"""Learning-rate schedules every task uses: linear warmup, then cosine to 0 (or constant)."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(
    total_steps: int, warmup_steps: int = 0, schedule: str = "cosine", warmup_from: float | None = None
) -> Callable[[int], float]:
    """Multiplier of each group's base lr at optimizer step ``s``: linear warmup over
    ``warmup_steps`` (from ``(s + 1) / warmup_steps``, or from ``warmup_from`` when given), then a
    cosine decay to 0 at ``total_steps`` (``schedule="constant"``: 1 after the warmup)."""
    total = max(1, int(total_steps))

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            if warmup_from is None:
                return (step + 1) / warmup_steps
            return warmup_from + (1.0 - warmup_from) * step / warmup_steps
        if schedule == "constant":
            return 1.0
        t = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f
