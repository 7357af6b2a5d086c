"""The choice rule of ``arm-choose`` (and of the quality benchmark's "Chosen on validation")."""

from __future__ import annotations

import math
from collections.abc import Mapping


def lowest_loss(losses: Mapping[str, float | None]) -> str | None:
    """``argmin`` of the finite losses, ties to the first in iteration order; None when no
    loss is finite (missing, NaN or Inf losses never win)."""
    best: str | None = None
    for name, loss in losses.items():
        if loss is not None and math.isfinite(loss) and (best is None or loss < losses[best]):
            best = name
    return best


__all__ = ["lowest_loss"]
