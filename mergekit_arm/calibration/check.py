"""``arm-calibrate MODEL FILE --check``: does a statistics file belong to a model folder?

The model's weights are named and shaped as transformers 5 builds the model (and as
MergeKit 0.1.5 hands them to the merge): a Mixtral checkpoint stored with
``block_sparse_moe.experts.N.w1.weight`` is checked as ``mlp.experts.gate_up_proj``
``(E, 2I, H)``. Which entries each weight needs comes from
:func:`mergekit_arm.weight_inputs.weight_input`, the mapping the merge uses.
"""

from __future__ import annotations

import os

from mergekit_arm.calibration.lazy import LazyCheckpoint
from mergekit_arm.calibration.renames import renamed_weights
from mergekit_arm.errors import ModelLoadError, StatisticsError
from mergekit_arm.models import check_model_folder, load_model_config, not_a_causal_lm
from mergekit_arm.statistics import ActivationStatistics, load_statistics
from mergekit_arm.weight_inputs import weight_input

#: Names of input embeddings an untied checkpoint of a tied model stores ``lm_head`` as.
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")


def model_weight_shapes(folder, trust_remote_code: bool = False) -> tuple[dict[str, tuple[int, ...]], bool]:
    """``({name: shape}, tied)`` of every parameter of the causal LM in ``folder``, as
    transformers names it (built on the meta device: nothing is read), tied ones included."""
    model, tied = _meta_model(folder, trust_remote_code)
    return _parameter_shapes(model), tied


def _parameter_shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters(remove_duplicate=False)}


def _meta_model(folder, trust_remote_code: bool = False):
    """``(model, tied)``: the causal LM of ``folder`` on the meta device (nothing read)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    config = load_model_config(folder, trust_remote_code)
    try:
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as error:
        raise not_a_causal_lm(folder, config, error) from error
    text = getattr(config, "get_text_config", lambda: config)()
    tied = bool(getattr(text, "tie_word_embeddings", False)
                or getattr(config, "tie_word_embeddings", False))
    if tied:
        model.tie_weights()
    return model, tied


def check_statistics(
    path: str | os.PathLike, model: str | os.PathLike, *, trust_remote_code: bool = False
) -> ActivationStatistics:
    """Validate a statistics file and check that it was computed from the model folder ``model``.

    Every entry is read and validated; every weight of ``model`` that
    :func:`~mergekit_arm.weight_inputs.weight_input` maps to entries (2-D linear weights,
    each expert of stacked experts, MoE routers) must have them, with the shape and the
    probe values they were computed from
    (:meth:`~mergekit_arm.statistics.ActivationStatistics.check_weight`), and the file must
    hold no entry the model has no weight for. Weights are read one at a time from the
    model's safetensors files (converted from the checkpoint's names where needed).
    """
    folder = check_model_folder(model)
    stats = load_statistics(path)  # refuses aliases to entries the file does not hold
    stats.validate_all()
    model, tied = _meta_model(folder, trust_remote_code)
    shapes = _parameter_shapes(model)
    weights = LazyCheckpoint(folder)
    # checkpoint names transformers renames (GPT-NeoX embed_out.weight is lm_head.weight):
    # needed where MergeKit can only hand the weight under its checkpoint name
    checkpoint_of: dict[str, str] = {}
    for checkpoint, runtime in renamed_weights(model, weights.weight_map).items():
        checkpoint_of[runtime] = checkpoint
        target = weight_input(checkpoint, shapes[runtime])
        if target is None or all(e in stats for e in target.entries) or not weights.can_read(runtime):
            shapes[checkpoint] = shapes[runtime]
    embedding = next((n for n in weights.weight_map if n.endswith(_EMBEDDING_SUFFIXES)), None)
    label = str(folder)
    tied_entries = getattr(stats, "tied_weights", None) or {}
    extra = {"tied": tied_entries} if tied_entries else {}
    expected: set[str] = set()
    uncovered: list[str] = []
    for name in sorted(shapes):
        target = weight_input(name, shapes[name], not_linear=stats.other_2d_weights, **extra)
        if target is None:
            continue
        expected.update(target.entries)
        lacking = [entry for entry in target.entries if entry not in stats]
        if lacking:
            uncovered.append(lacking[0])
            continue
        stored = name if weights.can_read(name) else checkpoint_of.get(name, name)
        if not weights.can_read(stored) and tied and name.endswith("lm_head.weight") and embedding:
            stored = embedding  # tied: lm_head is the input embedding
        try:
            tensor = weights.get(stored)
        except ModelLoadError as error:
            raise StatisticsError(
                f"cannot check {path} against {label}: {name} cannot be read from its "
                f"safetensors files ({error}); if the file was computed from this model, "
                "its checkpoint stores the weight in a layout transformers converts at run "
                "time in a way mergekit-arm cannot follow (not a plain renaming), which is "
                "not supported yet (README, Supported architectures)"
            ) from error
        for entry, matrix in target.matrices(tensor):
            stats.check_weight(entry, matrix, label)
    renamed = [e for e in uncovered if e in checkpoint_of.values()]
    if renamed:
        runtime = next(r for r, c in checkpoint_of.items() if c == renamed[0])
        raise StatisticsError(
            f"statistics file {stats.path} has no entry for {renamed[0]}, the checkpoint name "
            f"of {runtime} in {label} (transformers renames it at run time), which MergeKit "
            "hands the merge: an older mergekit-arm wrote the file without checkpoint names; "
            f"run `arm-calibrate {label} <file>` again"
        )
    if uncovered:
        raise StatisticsError(
            f"statistics file {stats.path} has no entries for {len(uncovered)} weights of {label} "
            f"(e.g. {uncovered[0]}): it was computed from a different model ({stats.model}); run "
            f"`arm-calibrate {label} <file>`"
        )
    foreign = sorted(stats.weight_names - expected - set(stats.other_2d_weights))
    if foreign:
        raise StatisticsError(
            f"statistics file {stats.path} has statistics for {foreign[0]}, which {label} does "
            f"not have: the file was computed from a different model ({stats.model}); run "
            f"`arm-calibrate {label} <file>`"
        )
    return stats


__all__ = ["check_statistics", "model_weight_shapes"]
