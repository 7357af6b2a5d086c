"""The averaging family inside a stream: ``start: average`` and the replay YAML of its
start model (MergeKit's own ``linear`` method), and the per-step YAML pieces of toward
legs and per-block rates. :mod:`mergekit_arm.stream.runner` calls these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from mergekit_arm.stream.blocks import filter_list, group_filters
from mergekit_arm.stream.step import StateDict


def weighted_average(targets: Sequence[tuple[StateDict, float]]) -> dict[str, torch.Tensor]:
    """``sum_j w_j c_j / sum_j w_j`` through MergeKit's ``linear`` method in float32 (so the
    start model is exactly what ``steps/step-0.yml`` replays)."""
    from mergekit.merge_methods import merge_state_dicts

    models = {f"c{j}": state for j, (state, _) in enumerate(targets)}
    weights = {f"c{j}": float(w) for j, (_, w) in enumerate(targets)}
    with torch.no_grad():
        return merge_state_dicts(models, "linear", parameters={"weight": weights,
                                                               "normalize": True},
                                 dtype=torch.float32, out_dtype=torch.float32)


def average_yaml(targets: Sequence[tuple[Path, float]], yaml_path: Path, output: Path) -> str:
    """``steps/step-0.yml``: the ``start: average`` model with plain ``mergekit-yaml``."""
    config = {
        "merge_method": "linear",
        "models": [{"model": str(path), "parameters": {"weight": float(w)}}
                   for path, w in targets],
        "parameters": {"normalize": True},
        "dtype": "float32",
        "out_dtype": "float32",
    }
    return (f"# The start model (start: average) of an arm-stream run: the weighted average "
            f"of the checkpoints.\n# Replay it with: mergekit-yaml {yaml_path} OUTPUT_DIR\n"
            f"# The result equals {output} (float32).\n" + yaml.safe_dump(config, sort_keys=False))


def yaml_learning_rate(record: dict[str, Any], names: Sequence[str],
                       groups: str | None) -> Any:
    """The step YAML's ``learning_rate``: the step's eta, or (per-block steps) the filter
    list that gives every tensor its group's rate."""
    rates = record.get("block_rates")
    if not rates or groups is None:
        return record["learning_rate"]
    return filter_list(group_filters(names, groups), rates)


__all__ = ["average_yaml", "weighted_average", "yaml_learning_rate"]
