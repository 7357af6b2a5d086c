"""The standard candidates of ``arm-choose`` (``standard:``), written out from ``origin`` and
``checkpoints`` so that a user lists only their models.

Read off the quality benchmark (docs/quality.md): the best early-checkpoint candidates
were the plain average of the checkpoints, ``model_stock`` and the toward stream with a
line search on ``eta_t = m / t`` (best on new templates for SmolLM2), while the latest
checkpoint stayed best on what SFT trained. ARM and ExPO tied each other below the average,
so they are not standard; add them as ``candidates`` entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from mergekit_arm.stream.inputs import saved_dtype

StandardRecipe = Literal["checkpoints", "average", "model-stock", "toward-line-search"]
STANDARD_RECIPES: tuple[StandardRecipe, ...] = (
    "checkpoints", "average", "model-stock", "toward-line-search")
TOWARD_MULTIPLIERS = (0.5, 1.0, 1.5)
_DTYPE_NAMES = {"torch.float32": "float32", "torch.bfloat16": "bfloat16",
                "torch.float16": "float16"}


def _out_dtype(origin: str) -> str:
    """The origin's saved dtype, so a merge is written as the checkpoints are."""
    return _DTYPE_NAMES.get(str(saved_dtype(Path(origin))), "float32")


def checkpoint_names(checkpoints: list[str]) -> list[str]:
    """``ckpt-<folder name>`` per checkpoint, made unique with ``-2``, ``-3``, ..."""
    names: list[str] = []
    for path in checkpoints:
        base = "ckpt-" + "".join(ch if ch.isalnum() or ch in "._-" else "-"
                                 for ch in Path(path).name)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def standard_candidates(recipes: tuple[StandardRecipe, ...], origin: str,
                        checkpoints: list[str], tuning: dict[str, Any], device: str
                        ) -> list[dict[str, Any]]:
    """Candidate entries (mappings) of the requested standard recipes.

    * ``checkpoints``: every checkpoint as it is;
    * ``average``: ``merge_method: linear``, equal weights (a uniform soup);
    * ``model-stock``: ``merge_method: model_stock`` over the checkpoints, base ``origin``
      (two or more checkpoints);
    * ``toward-line-search``: an ``arm-stream`` of ``mode: toward`` from ``origin`` through
      the checkpoints in order, ``eta_t = m / t`` with ``m`` in 0.5 / 1 / 1.5 searched per
      step on ``tuning`` (which also keeps its step).
    """
    out_dtype = _out_dtype(origin)
    entries: list[dict[str, Any]] = []
    if "checkpoints" in recipes:
        entries += [{"name": name, "model": path}
                    for name, path in zip(checkpoint_names(checkpoints), checkpoints, strict=True)]
    if "average" in recipes:
        entries.append({"name": "average", "mergekit": {
            "merge_method": "linear", "dtype": "float32", "out_dtype": out_dtype,
            "models": [{"model": c, "parameters": {"weight": 1.0}} for c in checkpoints]}})
    if "model-stock" in recipes:
        entries.append({"name": "model-stock", "mergekit": {
            "merge_method": "model_stock", "base_model": origin, "dtype": "float32",
            "out_dtype": out_dtype, "models": [{"model": c} for c in checkpoints]}})
    if "toward-line-search" in recipes:
        entries.append({"name": "toward-line-search", "stream": {
            "mode": "toward", "origin": origin, "checkpoints": list(checkpoints),
            "schedule": {"kind": "line_search", "decay": "average",
                         "candidates": list(TOWARD_MULTIPLIERS)},
            "validation": tuning, "device": device, "out_dtype": out_dtype}})
    return entries


__all__ = ["STANDARD_RECIPES", "StandardRecipe", "checkpoint_names", "standard_candidates"]
