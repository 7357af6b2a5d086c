"""The choice rule of ``arm-choose`` (and of the quality benchmark's "Chosen on validation").

One held-out set: the lowest loss (:func:`lowest_loss`). With guards
(:func:`guarded_choice`): the lowest *primary* loss among the candidates whose loss on
every guard set ``g`` stays within ``limit_g``, where ``limit_g = L_ref + m`` (absolute)
or ``L_ref * (1 + m)`` (relative), ``m`` the guard's ``max_regression`` and ``L_ref``
the reference's loss on ``g`` (the origin's, or a named candidate's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def lowest_loss(losses: Mapping[str, float | None]) -> str | None:
    """``argmin`` of the finite losses, ties to the first in iteration order; None when no
    loss is finite (missing, NaN or Inf losses never win)."""
    best: str | None = None
    for name, loss in losses.items():
        if loss is not None and math.isfinite(loss) and (best is None or loss < losses[best]):
            best = name
    return best


@dataclass(frozen=True)
class Guard:
    """A held-out set the choice may not regress on by more than ``max_regression``
    against ``against`` (``origin`` or a candidate's name)."""

    name: str
    max_regression: float
    relative: bool = False
    against: str = "origin"

    def limit(self, reference: float) -> float:
        """``reference + m`` (absolute) or ``reference * (1 + m)`` (relative)."""
        if self.relative:
            return reference * (1.0 + self.max_regression)
        return reference + self.max_regression

    def describe(self, reference: float) -> str:
        """``origin 1.2000 + 0.0500`` / ``average 1.2000 x 1.02``: how the limit is made."""
        if self.relative:
            return f"{self.against} {reference:.4f} x {1.0 + self.max_regression:g}"
        return f"{self.against} {reference:.4f} + {self.max_regression:g}"


@dataclass
class GuardedChoice:
    """The outcome of :func:`guarded_choice`: the chosen candidate (None: none qualified),
    why each excluded one was, every guard's limit and, when none qualified, the closest
    candidate (the smallest worst excess over a limit; ties: the lower primary loss)."""

    chosen: str | None
    excluded: dict[str, list[str]] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    closest: str | None = None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def guarded_choice(primary: Mapping[str, float | None],
                   guard_losses: Mapping[str, Mapping[str, float | None]],
                   guards: Sequence[Guard],
                   origin_losses: Mapping[str, float] | None = None) -> GuardedChoice:
    """:func:`lowest_loss` of ``primary`` over the candidates within every guard.

    ``guard_losses[g][c]``: candidate ``c``'s loss on guard set ``g``; ``origin_losses[g]``
    the origin's, for a guard ``against: origin``. A missing or non-finite guard loss
    fails the guard. Raises ``KeyError`` / ``ValueError`` for a reference that is
    missing or not finite (the caller checks references first)."""
    result = GuardedChoice(chosen=None)
    excess: dict[str, float] = {name: -math.inf for name in primary}
    for guard in guards:
        losses = guard_losses[guard.name]
        reference = (origin_losses or {})[guard.name] if guard.against == "origin" \
            else losses[guard.against]
        if not _finite(reference):
            raise ValueError(f"guard {guard.name}: the reference {guard.against} has loss "
                             f"{reference}")
        limit = guard.limit(reference)
        result.limits[guard.name], result.references[guard.name] = limit, reference
        for name in primary:
            loss = losses.get(name)
            over = loss - limit if _finite(loss) else math.inf
            excess[name] = max(excess[name], over)
            if over > 0:
                shown = f"{loss:.4f}" if loss is not None else "missing"
                result.excluded.setdefault(name, []).append(
                    f"{guard.name} {shown} > {limit:.4f} ({guard.describe(reference)})")
    result.chosen = lowest_loss({n: v for n, v in primary.items() if n not in result.excluded})
    if result.chosen is None and primary:
        result.closest = min(primary, key=lambda n: (
            excess[n], primary[n] if _finite(primary[n]) else math.inf))
    return result


__all__ = ["Guard", "GuardedChoice", "guarded_choice", "lowest_loss"]
