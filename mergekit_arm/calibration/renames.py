"""Weights a checkpoint stores under another name than the module transformers loads them into.

transformers 5 renames some checkpoint tensors while loading (its checkpoint conversion
mapping, ``WeightRenaming``): GPT-NeoX's output head ``embed_out.weight`` is loaded as
``lm_head.weight``, a Mixtral checkpoint's ``block_sparse_moe.gate.weight`` as
``mlp.gate.weight``. Calibration measures the module, so its entry is the runtime name;
MergeKit hands the method the weight under whichever name its architecture uses (GPT-NeoX:
the checkpoint's ``embed_out.weight``). :func:`renamed_weights` finds those pairs, and
:func:`add_checkpoint_names` records each checkpoint name in the statistics file as an
alias of the runtime name's entry (with its own probe), so the one mapping
(:func:`mergekit_arm.weight_inputs.weight_input`, an entry per weight name) finds the same
statistics under either name. A tensor a ``WeightConverter`` builds from several stored
tensors (stacked experts) is no renaming and gets no alias.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mergekit_arm.statistics_data import StatisticsContent
from mergekit_arm.weight_inputs import expert_entry, parse_entry


def renamed_weights(model: torch.nn.Module, stored: Iterable[str] | None = None) -> dict[str, str]:
    """``{checkpoint name: runtime parameter name}`` for each parameter of ``model`` that
    transformers' conversion mapping of the model renames from another checkpoint name.

    ``stored``: the checkpoint's tensor names; without it (an in-memory model) the names
    transformers' ``save_pretrained`` would write (the renamings reversed). A checkpoint
    name that is itself a parameter name is never an alias."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import (
            WeightConverter,
            WeightRenaming,
            apply_renamings,
            rename_source_key,
        )
    except ImportError:  # a transformers without conversion mappings renames nothing
        return {}
    if not hasattr(model, "named_modules") or not hasattr(model, "config"):
        return {}
    try:
        transforms = get_model_conversion_mapping(model, add_legacy=stored is not None)
    except Exception:  # noqa: BLE001 - a model transformers cannot map renames nothing here
        return {}
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    if not renamings:
        return {}
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    if stored is None:  # as save_pretrained reverts them; a converted tensor is no renaming
        reverse = [t.reverse_transform() for t in transforms[::-1]]
        back = [t for t in reverse if isinstance(t, WeightRenaming)]
        converters = [t for t in reverse if isinstance(t, WeightConverter)]
        stored = set()
        for name in params:
            saved, converted = rename_source_key(name, back, converters, reverse=True)
            if converted is None:
                stored.add(saved)
    found = {}
    for name in sorted(stored):
        if name in params:
            continue
        runtime = apply_renamings(name, renamings)
        if runtime != name and runtime in params:
            found[name] = runtime
    return found


def add_checkpoint_names(content: StatisticsContent, renames: dict[str, str]) -> None:
    """Record each checkpoint name of ``renames`` (:func:`renamed_weights`) under the same
    statistics as its runtime name: an alias of a linear weight's entry (of each expert's
    entry for stacked experts; probe and ``transposed`` mark copied), a name in ``other_2d_weights`` / ``tied_weights`` where
    the runtime name is one. In place."""
    entries = sorted(set(content.layers) | set(content.aliases))
    for checkpoint, runtime in sorted(renames.items()):
        for entry in entries:  # the weight's entry, or one per expert of a stacked tensor
            name, expert = parse_entry(entry)
            if name != runtime:
                continue
            alias = checkpoint if expert is None else expert_entry(checkpoint, expert)
            if alias in content.layers or alias in content.aliases:
                continue
            content.aliases[alias] = content.aliases.get(entry, entry)
            if entry in content.probes:
                content.probes[alias] = content.probes[entry].clone()
            if entry in content.transposed:
                content.transposed.append(alias)
        if runtime in content.other_2d_weights:
            content.other_2d_weights.append(checkpoint)
        if runtime in content.tied_weights:
            content.tied_weights[checkpoint] = content.tied_weights[runtime]


__all__ = ["add_checkpoint_names", "renamed_weights"]
