"""What a committed stream step writes besides its weights: the chosen weights loaded
into the current model, ``steps/step-K`` (``save_every``), ``steps/step-K.yml`` (the
plain ``mergekit-yaml`` replay) and, with ``start: average``, ``steps/step-0`` and
``steps/step-0.yml``. :class:`~mergekit_arm.stream.runner.StreamRunner` calls
:func:`write_step_files` before the step is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mergekit_arm._io import write_text_atomic
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.folders import save_model_folder
from mergekit_arm.stream.inputs import InputModel
from mergekit_arm.stream.recipes import average_yaml, yaml_learning_rate
from mergekit_arm.stream.report import step_yaml
from mergekit_arm.stream.state import OutLayout
from mergekit_arm.stream.step import Leg, StepResult

StepInputs = tuple[InputModel | None, list[tuple[InputModel, float]]]


@dataclass
class StepFiles:
    """The run's pieces the step files need."""

    config: StreamConfig
    layout: OutLayout
    current: torch.nn.Module
    tokenizer: Any
    parameters: dict[str, Any]

    def base(self, step: int, inputs: StepInputs) -> Path:
        """The folder the step's YAML uses as base_model (distinct from its other inputs)."""
        source, targets = inputs
        start = Path(self.config.start_path())
        paths = {t.path for t, _ in targets} | (set() if source is None else {source.path})
        if step == 1 and not self.config.starts_from_average() and start not in paths:
            return start
        return self.layout.step_model(step - 1)

    def saves(self, step: int) -> bool:
        every = self.config.save_every
        return every is not None and step % every == 0


def write_step_files(files: StepFiles, step: int, inputs: StepInputs, leg: Leg,
                     result: StepResult, record: dict) -> None:
    """Load the chosen weights into ``files.current``; write the step's model folder and
    replay YAML; add their paths (and the step's inputs) to ``record``."""
    config, layout, current = files.config, files.layout, files.current
    source, targets = inputs
    stats = layout.step_statistics(step) if leg.source is not None or (
        config.arm.off_subspace != 1.0) else None  # a plain toward step reads none
    from_stats = None if source is None else source.statistics
    record.update({
        "from": "current" if source is None else str(source.path),
        "to": [{"model": str(t.path), "weight": w} for t, w in targets],
        "statistics": {key: None if path is None else layout.relative(path)
                       for key, path in (("current", stats), ("from", from_stats))},
    })
    if result.chosen is None:
        return
    base = files.base(step, inputs)
    if step == 1 and base == layout.step_model(0):
        # the start is also an input of step 1 (or the average of the fixed set): save it
        # so that step-1.yml replays
        save_model_folder(current, files.tokenizer, base)
        if config.starts_from_average():
            path = layout.step_yaml(0)
            write_text_atomic(path, average_yaml([(t.path, w) for t, w in targets], path, base))
    current.load_state_dict(result.chosen.weights, strict=True)
    result.chosen.weights = None
    saved = files.saves(step)
    if saved:
        save_model_folder(current, files.tokenizer, layout.step_model(step))
    yaml_path = layout.step_yaml(step)
    replayable = base.is_dir()
    write_text_atomic(yaml_path, step_yaml(
        step=step, base_model=base, base_statistics=stats,
        learning_rate=yaml_learning_rate(record, list(current.state_dict()),
                                         config.blocks and config.blocks.groups),
        origin=None if source is None else source.path, origin_statistics=from_stats,
        targets=[(t.path, w) for t, w in targets], arm_parameters=files.parameters,
        replayable=replayable, output=layout.step_model(step) if saved else None,
        yaml_path=yaml_path,
    ))
    record["yaml"] = layout.relative(yaml_path)
    record["yaml_replayable"] = replayable
    record["saved_model"] = layout.relative(layout.step_model(step)) if saved else None


__all__ = ["StepFiles", "write_step_files"]
