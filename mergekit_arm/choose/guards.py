"""``arm-choose`` with guards: held-out sets the choice must not regress on.

``guards.NAME`` is a held-out set (the keys of ``validation``) with a ``max_regression``
against a reference (``origin``, or a candidate's name). Every candidate is scored on
every guard set too; the choice is the lowest loss on ``validation`` (the *primary* set)
among the candidates within every guard (:func:`~mergekit_arm.choose.pick.guarded_choice`,
the rule itself). When none is, the run stops with an error naming the closest one, and
no leaderboard nor ``OUT/model`` is written (the builds stay and are reused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mergekit_arm.calibration import TextRole
from mergekit_arm.choose.config import ChooseConfig
from mergekit_arm.choose.pick import Guard, GuardedChoice, guarded_choice
from mergekit_arm.choose.report import CandidateScore
from mergekit_arm.errors import ArmError
from mergekit_arm.heldout import heldout_batches

logger = logging.getLogger("mergekit_arm.choose")

Scorer = Callable[[Path, str, Mapping[str, list]], dict[str, float]]


def guard_rules(config: ChooseConfig) -> list[Guard]:
    """The config's guards as :class:`~mergekit_arm.choose.pick.Guard` rules."""
    return [Guard(name, g.max_regression, g.relative, g.against)
            for name, g in config.guards.items()]


def guard_batches(config: ChooseConfig, tokenizer: Any, device: torch.device,
                  positions: Any) -> dict[str, list]:
    """Loss batches of every guard set, by guard name."""
    return {name: heldout_batches(
        guard, f"guards.{name}", tokenizer, device, config.max_length,
        TextRole(f"guard {name} data", f"`guards.{name}.data` in the arm-choose config"),
        positions) for name, guard in config.guards.items()}


def origin_guard_losses(config: ChooseConfig, sets: Mapping[str, list],
                        score: Scorer) -> dict[str, float]:
    """The origin's loss on each guard set that is ``against: origin`` (the origin is a
    reference, not a candidate)."""
    wanted = {name: sets[name] for name, g in config.guards.items() if g.against == "origin"}
    if not wanted:
        return {}
    assert config.origin is not None  # ChooseConfig refuses a guard against a missing origin
    losses = score(Path(config.origin), "origin (the guards' reference)", wanted)
    logger.info("origin (reference): %s", ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    return losses


def apply_guards(config: ChooseConfig, rows: list[CandidateScore],
                 origin: Mapping[str, float]) -> GuardedChoice | None:
    """Mark each excluded row (``row.excluded``: why) and return the guarded choice; None
    without guards. Raises :class:`ArmError` when no candidate is within every guard."""
    if not config.guards:
        return None
    primary = {row.name: row.val_loss for row in rows}
    losses = {name: {row.name: row.guard_losses.get(name) for row in rows}
              for name in config.guards}
    try:
        choice = guarded_choice(primary, losses, guard_rules(config), origin)
    except ValueError as error:
        raise ArmError(f"arm-choose: {error}; a guard's reference needs a finite loss on "
                       "its set (check that model and the guard's texts)") from None
    for row in rows:
        row.excluded = choice.excluded.get(row.name, [])
    if choice.chosen is None and choice.closest is not None and len(choice.excluded) == len(rows):
        closest = next(row for row in rows if row.name == choice.closest)
        raise ArmError(
            f"no candidate is within every guard, so nothing was chosen (no OUT/model, no "
            f"leaderboard; the builds stay and are reused). The closest is "
            f"`{closest.name}` ({config.primary} loss {closest.val_loss:.4f}): "
            f"{'; '.join(closest.excluded)}. Loosen the guard (`guards.NAME.max_regression`, "
            "or `against:` another reference), or add candidates. Every candidate: "
            + "; ".join(f"{row.name}: {', '.join(row.excluded)}" for row in rows))
    return choice


def guards_record(config: ChooseConfig, choice: GuardedChoice) -> dict[str, Any]:
    """The ``leaderboard.json`` keys of a guarded choice: the primary set's name and each
    guard's settings, reference loss and limit."""
    return {"primary": config.primary, "guards": {
        name: guard.model_dump(mode="json") | {"reference_loss": choice.references[name],
                                               "limit": choice.limits[name]}
        for name, guard in config.guards.items()}}


__all__ = ["apply_guards", "guard_batches", "guard_rules", "guards_record",
           "origin_guard_losses"]
