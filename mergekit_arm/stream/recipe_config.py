"""Config pieces of the stream's recipes: ``start: average``, per-block step sizes
(``blocks``) and the ``selection`` set that guards them (see docs/streaming.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BlockGroups = Literal["kind", "depth"]
START_AVERAGE = "average"  # `start: average`: the weighted average of the checkpoints


MAX_MULTIPLIER = 1e6
"""The largest rate multiplier: with rates at most 1e45, every product stays finite."""


def check_multipliers(values: list[float]) -> list[float]:
    """Rate multipliers (line-search candidates, per-block tries): distinct, finite and > 0,
    so every rate they make follows the learning-rate rule."""
    bad = [v for v in values if not (math.isfinite(v) and 0 < v <= MAX_MULTIPLIER)]
    if bad:
        raise ValueError(
            f"multipliers must be finite, > 0 and at most {MAX_MULTIPLIER:.0e}, got {bad} "
            "(every rate they make follows the learning-rate rule: finite and > 0)"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"multipliers must be distinct, got {values}")
    return values


class BlockSearchConfig(BaseModel):
    """Per-block step sizes: after the step's rate ``eta`` is chosen, a coordinate search
    sets ``eta_g = m * eta`` for one group ``g`` of tensors at a time (``m`` from
    ``multipliers``), keeping the lowest loss on the `selection` set."""

    model_config = ConfigDict(extra="forbid")

    groups: BlockGroups = Field(
        "kind", description="kind: embeddings+head / attention / MLP / other (norms); "
        "depth: the decoder layers in quarters, plus embeddings+head+norms")
    multipliers: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 1.5], min_length=1,
        description="multipliers of the step's rate tried for each group")
    sweeps: int = Field(1, ge=1, description="passes over the groups")

    @field_validator("multipliers")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        return check_multipliers(values)



def _same_file(a: str | None, b: str | None) -> bool:
    def resolve(path: str | None) -> Path | None:
        return None if path is None else Path(path).expanduser().resolve()

    return resolve(a) == resolve(b)


def texts_overlap(a: Any, b: Any) -> bool:
    """Whether two held-out sections (``data``, ``text_mode``, ``offset``, ``samples``)
    read at least one common text: the same file and mode, and overlapping offsets."""
    same = _same_file(a.data, b.data) and a.text_mode == b.text_mode
    return same and a.offset < b.offset + b.samples and b.offset < a.offset + a.samples


def selection_problem(selection: Any, validation: Any, schedule_kind: str,
                      has_blocks: bool) -> str | None:
    """Why the ``selection``/``validation`` pair is unusable (None: it is fine).

    The in-step searches score on ``selection``; ``validation`` reports every step and
    picks the kept one, so the two must not read the same texts.
    """
    if has_blocks and selection is None:
        return ("`blocks` searches step sizes on held-out loss: it needs a `selection` "
                "section (held-out text distinct from `validation`)")
    if selection is None:
        return None
    if validation is None:
        return "`selection` needs a `validation` section (which reports the steps and " \
               "picks the kept one)"
    if schedule_kind != "line_search" and not has_blocks:
        return ("`selection` is read only by a line search or `blocks`; remove it or add "
                "one of them")
    sel, val = selection, validation
    if texts_overlap(sel, val):
        return ("`selection` and `validation` read the same texts "
                f"({sel.data or 'the shipped corpus'}, offsets {sel.offset}+{sel.samples} "
                f"and {val.offset}+{val.samples}): the search would fit the data that "
                "picks and reports the kept step. Use another file or disjoint offsets "
                "(`selection.offset`)")
    return None


__all__ = ["START_AVERAGE", "BlockGroups", "BlockSearchConfig", "selection_problem",
           "texts_overlap"]
