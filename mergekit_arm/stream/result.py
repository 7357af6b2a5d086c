"""What ``run_stream`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class StreamResult:
    """Outcome of a stream: the final model folder, one record per step, the kept step."""

    out: Path
    model: Path
    records: list[dict[str, Any]]
    status: Literal["finished", "stopped"]
    stop_reason: str | None = None
    start_loss: float | None = None
    kept_step: int = 0

    @property
    def steps(self) -> int:
        """Number of steps accepted (a stopped stream's failed step is not counted)."""
        return sum(1 for r in self.records if r.get("accepted"))

    @property
    def final_loss(self) -> float | None:
        """Held-out loss of the final model, the kept step (None without validation)."""
        if self.kept_step == 0:
            return self.start_loss
        return next(r.get("val_loss") for r in self.records if r["step"] == self.kept_step)


__all__ = ["StreamResult"]
