"""Tensors MergeKit 0.1.5 would leave out of a merge without a word: refused while it plans.

MergeKit's planner skips an *optional* weight of the architecture when no input's
checkpoint index holds it under its name or aliases (``MergePlanner.plan_tensor``), without
trying the checkpoint conversion its loader would use (``LoadTensor``:
``convert_checkpoint_tensors``). A weight is optional in an architecture MergeKit infers
from the checkpoints (no JSON definition) when some layer lacks it: the stacked experts of
an MoE whose first layers are dense (DeepSeek-V2/V3 with ``first_k_dense_replace``,
Qwen2-MoE with ``mlp_only_layers``). Their checkpoints store the experts one by one
(``mlp.experts.0.gate_proj.weight``) while the architecture names the stacked tensor
(``mlp.experts.gate_up_proj``), so every such tensor is left out of the output with exit 0,
for every merge method, and the merged model loads with freshly initialised experts.

:func:`check_no_weight_skipped` finds those weights (optional, held by no input under its
name, convertible from some input's checkpoint) once per planned merge and refuses it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

from mergekit_arm._stack import find_on_stack
from mergekit_arm.errors import ModelLoadError

_CHECKED_LOCK = threading.Lock()
_CHECKED: weakref.WeakSet = weakref.WeakSet()  # planners already checked


def _running_planner() -> Any | None:
    """The ``MergePlanner`` planning on this thread's stack, if any."""
    from mergekit.plan import MergePlanner

    return find_on_stack(lambda frame: frame.f_locals.get("self")
                         if isinstance(frame.f_locals.get("self"), MergePlanner) else None)


def skipped_weights(planner: Any, models: Sequence[Hashable], limit: int = 3) -> list[str]:
    """Up to ``limit`` weights of ``planner``'s architecture that MergeKit would skip although
    an input's checkpoint holds them under other (converted) names."""
    from mergekit.architecture import ConfiguredModelArchitecture
    from mergekit.architecture.conversion import can_convert_checkpoint_keys
    from mergekit.io.tasks import LoaderCache

    trust = bool(getattr(planner.options, "trust_remote_code", False))
    inputs, optional = [], {}
    for model in models:
        config = model.config(trust_remote_code=trust)  # type: ignore[attr-defined]
        inputs.append((set(LoaderCache().get(model).index.tensor_paths), config.model_type))
        arch = ConfiguredModelArchitecture(info=planner.arch_info, config=config)
        optional.update({w.name: w for w in arch.all_weights() if w.optional})
    found: list[str] = []
    for name, weight in optional.items():
        names = [name, *(weight.aliases or ())]
        if any(n in keys for keys, _ in inputs for n in names):
            continue  # MergeKit plans it
        if any(can_convert_checkpoint_keys(model_type, keys, name) for keys, model_type in inputs):
            found.append(name)
            if len(found) >= limit:
                break
    return found


def check_no_weight_skipped(models: Sequence[Hashable]) -> None:
    """Refuse, once per planned merge, one in which MergeKit would leave out weights the
    input checkpoints hold (see the module docstring); nothing outside MergeKit's planner."""
    planner = _running_planner()
    if planner is None or not models:
        return
    with _CHECKED_LOCK:
        if planner in _CHECKED:
            return
        _CHECKED.add(planner)
    skipped = skipped_weights(planner, models)
    if skipped:
        raise ModelLoadError(
            f"arm: MergeKit would leave {', '.join(skipped)}"
            f"{' and more' if len(skipped) >= 3 else ''} out of the merge (exit 0, the merged "
            "model loading freshly initialised weights there): the checkpoints store these "
            "weights under other names (e.g. experts one by one) and MergeKit 0.1.5 skips an "
            "optional weight it finds under no input's own name. This happens with MoE models "
            "whose first layers are dense (DeepSeek-V2/V3, Qwen2-MoE with mlp_only_layers), "
            "for every merge method; they cannot be merged with mergekit-yaml (README, "
            "Supported architectures)"
        )


__all__ = ["check_no_weight_skipped", "skipped_weights"]
