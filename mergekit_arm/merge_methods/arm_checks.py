"""Checks around the ARM kernel: values representable in the written dtype, and input
shapes that agree (checked from the checkpoints' headers, before MergeKit's own check).

MergeKit 0.1.5 does not tell a merge method the dtype its result is written in: the
kernel returns a tensor (in the input dtype), and ``SaveTensor`` casts it to the config's
``out_dtype`` afterwards (``plan.py``: ``SaveTensor(dtype=weight.force_dtype or
config.out_dtype)``; ``ExecuteMergeMethodTask.out_dtype`` is never set by the planner).
:func:`written_dtype` therefore reads ``out_dtype`` from the running
``mergekit.merge.run_merge`` call (the config object it was given), and the kernel checks
its result against the narrower of that and its own return dtype.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable, Sequence
from functools import lru_cache

import torch
from safetensors import SafetensorError

from mergekit_arm._stack import find_on_stack
from mergekit_arm.errors import ArmError, NonFiniteError
from mergekit_arm.models import safetensors_shapes

LOG = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64}


def value_range(tensor: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a floating tensor in one pass (NaN if any value is NaN)."""
    if tensor.numel() == 0:
        return 0.0, 0.0
    low, high = torch.aminmax(tensor)
    return float(low), float(high)


def fits(low: float, high: float, dtype: torch.dtype) -> bool:
    """Whether every value in ``[low, high]`` is finite once rounded to ``dtype``."""
    ends = torch.tensor([low, high], dtype=torch.float64).to(dtype)
    return bool(torch.isfinite(ends).all())


def narrowest(*dtypes: torch.dtype | None) -> torch.dtype:
    """The floating dtype of smallest range among ``dtypes`` (None entries ignored)."""
    floating = [d for d in dtypes if d is not None and d.is_floating_point]
    return min(floating, key=lambda d: torch.finfo(d).max) if floating else torch.float32


def range_problem(name: str, low: float, high: float, dtype: torch.dtype) -> str | None:
    """Why values in ``[low, high]`` cannot be written as ``dtype`` (None: they can)."""
    if fits(low, high, dtype):
        return None
    if not fits(low, high, torch.float64):
        return f"tensor {name} holds NaN/Inf values"
    return (
        f"tensor {name} has values up to {max(abs(low), abs(high)):.4g}, beyond "
        f"{str(dtype).removeprefix('torch.')}'s largest finite value "
        f"{torch.finfo(dtype).max:.4g}: written in that dtype they would be Inf. Lower the "
        "learning rate, or write a wider dtype (out_dtype: bfloat16 or float32)"
    )


def check_representable(tensor: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    """Raise :class:`NonFiniteError` unless every value of ``tensor`` is finite once cast to
    ``dtype`` (one pass: NaN/Inf already there, or an overflow of the cast)."""
    if not tensor.is_floating_point():
        return
    problem = range_problem(name, *value_range(tensor), dtype)
    if problem is not None:
        raise NonFiniteError(problem)


def written_dtype() -> torch.dtype | None:
    """``out_dtype`` of the ``mergekit.merge.run_merge`` call running in this thread, if any.

    MergeKit passes the written dtype to no merge method (see module docstring), so it is
    read from the ``merge_config`` argument of the enclosing ``run_merge`` frame.
    """
    name = getattr(running_merge_config(), "out_dtype", None)
    return _DTYPES.get(str(name).removeprefix("torch.")) if name else None


def running_merge_config() -> object | None:
    """The ``merge_config`` of the ``mergekit.merge.run_merge`` call running in this thread."""
    from mergekit import merge

    code = merge.run_merge.__code__
    return find_on_stack(
        lambda frame: frame.f_locals.get("merge_config") if frame.f_code is code else None)


# -- input shapes ----------------------------------------------------------------------------


class InputShapeError(ArmError):
    """The inputs of a merge store a tensor with different shapes. Not a ``ValueError``:
    raised while MergeKit plans (inside a pydantic validator), it reaches the user as is."""


_SHAPES_LOCK = threading.Lock()


def checkpoint_shape(model: Hashable, name: str) -> tuple[int, ...] | None:
    """Shape of tensor ``name`` in a MergeKit model reference's safetensors, None if unknown."""
    from mergekit.common import ModelReference
    from mergekit.io.tasks import LoaderCache

    if not isinstance(model, ModelReference):
        return None
    try:
        with _SHAPES_LOCK:
            loader = LoaderCache().get(model)
        index = loader.index
        shard = index.tensor_paths.get(name)
        if shard is None or not index.is_safetensors:
            return None
        return safetensors_shapes(os.path.join(index.base_path, shard)).get(name)
    except (OSError, ValueError, KeyError, AttributeError, SafetensorError):  # MergeKit checks
        return None


@lru_cache(maxsize=64)
def vocabulary_size(model: Hashable) -> int | None:
    """``vocab_size`` of a model reference's config (None if it has none)."""
    try:
        config = model.config(trust_remote_code=False)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - remote code or no config: no vocabulary known
        return None
    size = getattr(config, "vocab_size", None)
    if size is None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "vocab_size", None)
    return size


def check_input_shapes(models: Sequence[Hashable], name: str | None) -> None:
    """Refuse inputs whose checkpoints store ``name`` with different shapes, naming them.

    A difference only along vocabulary axes (each model's size there is its own
    ``vocab_size``) may be aligned by MergeKit's ``tokenizer:`` settings: it is logged.
    """
    if not name or len(models) < 2:
        return
    shapes = {}
    for model in models:
        shape = checkpoint_shape(model, name)
        if shape is None:
            return
        shapes[model] = shape
    if len(set(shapes.values())) <= 1:
        return
    listed = ", ".join(f"{m} {s}" for m, s in shapes.items())
    ranks = {len(s) for s in shapes.values()}
    axes = set() if len(ranks) > 1 else {
        i for i in range(next(iter(ranks))) if len({s[i] for s in shapes.values()}) > 1}
    if axes and all(vocabulary_size(m) == s[i] for m, s in shapes.items() for i in axes):
        LOG.warning("arm: the inputs have different vocabulary sizes for %s (%s); unless "
                    "`tokenizer:` aligns them, MergeKit stops with 'Tensor size mismatch'",
                    name, listed)
        return
    raise InputShapeError(
        f"arm: the inputs store {name} with different shapes: {listed}. ARM merges "
        "checkpoints of one architecture (same widths and layer count); check the model paths"
    )
