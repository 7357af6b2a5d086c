"""What calibration needs to know about a model: its linears, its decoder stack, its weights.

Shared by both passes: the ``nn.Linear`` / ``Conv1D`` weights to measure, the
Llama/Qwen-style decoder stack (``model.model.layers``, ``model.model.norm``,
``model.lm_head``), the exception that ends a forward early, the probes of resident
(possibly offloaded) weights, and the statistics content of a finished pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from mergekit_arm.calibration.experts import (
    ExpertsModule,
    require_every_expert_ran,
    router_modules,
)
from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import (
    LayerStatistics,
    StatisticsContent,
    fingerprint_tensors,
    weight_probe,
)


def linear_modules(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, bool]]:
    """``weight name -> (module, transposed)`` for every ``nn.Linear``, GPT-2 ``Conv1D`` and
    mixture-of-experts router (:func:`~mergekit_arm.calibration.experts.router_modules`)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()  # noqa: N806
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            found[f"{name}.weight"] = (module, False)
        elif Conv1D and isinstance(module, Conv1D):
            found[f"{name}.weight"] = (module, True)
    found.update(router_modules(model))
    return found


@dataclass
class DecoderStack:
    """The parts of a causal LM the layer walk needs, with their parameter-name prefixes."""

    body: torch.nn.Module  # model.model: embeddings, rotary embeddings, layers, norm
    layers: torch.nn.ModuleList
    layers_prefix: str  # "model.layers"
    norm: torch.nn.Module
    norm_prefix: str  # "model.norm"
    head: torch.nn.Module
    head_name: str  # "lm_head.weight"


def decoder_stack(model: torch.nn.Module) -> DecoderStack | None:
    """The decoder stack of a Llama/Qwen-style causal LM, or None when the layout differs
    (its only linear outside the decoder layers must be ``lm_head``)."""
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    norm = getattr(body, "norm", None)
    head = getattr(model, "lm_head", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return None
    if not isinstance(norm, torch.nn.Module) or not isinstance(head, torch.nn.Linear):
        return None
    names = {id(m): n for n, m in model.named_modules()}
    layers_prefix, norm_prefix, head_prefix = names[id(layers)], names[id(norm)], names[id(head)]
    outside = [
        name for name in linear_modules(model)
        if not name.startswith(layers_prefix + ".") and name != f"{head_prefix}.weight"
    ]
    if outside:
        return None
    return DecoderStack(body, layers, layers_prefix, norm, norm_prefix, head, f"{head_prefix}.weight")


class StopForward(Exception):
    """Raised by a forward pre-hook to end a forward early (its remaining output is unused)."""


def stop_forward(module: torch.nn.Module, args) -> None:
    """A forward pre-hook that ends the forward (:class:`StopForward`)."""
    raise StopForward


def resident_probe(model: torch.nn.Module, name: str) -> torch.Tensor:
    """:func:`weight_probe` of parameter ``name``, onloading it if accelerate offloaded it."""
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    param = getattr(owner, attr)
    if param.device.type != "meta":
        return weight_probe(param)
    from accelerate.utils import align_module_device  # dispatched with cpu/disk offload

    with align_module_device(owner):
        return weight_probe(getattr(owner, attr))


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter's name, shape and probe values."""
    names = sorted(name for name, _ in model.named_parameters())
    return fingerprint_tensors((name, resident_probe(model, name)) for name in names)


@contextmanager
def skip_logits(model: torch.nn.Module) -> Iterator[None]:
    """For a decoder-stack layout (:func:`decoder_stack`), end each forward in a pre-hook of
    ``lm_head`` that runs after the input hooks: the model's own forward computes everything
    up to ``lm_head``'s input, and the logits (vocab x tokens, ~21% of SmolLM2-135M's
    forward) are never computed. Other layouts run in full."""
    stack = decoder_stack(model)
    if stack is None:
        yield
        return
    handle = stack.head.register_forward_pre_hook(stop_forward)  # after the input hooks
    try:
        yield
    finally:
        handle.remove()


def assemble_content(
    model: torch.nn.Module,
    modules: dict[str, tuple[torch.nn.Module, bool]],
    layers: dict[str, LayerStatistics],
    aliases: dict[str, str],
    probes: dict[str, torch.Tensor],
    experts: dict[str, ExpertsModule] | None = None,
    counts: dict[str, int] | None = None,
) -> StatisticsContent:
    """The file content of a finished pass (shared by both calibration modes); raises
    unless every linear weight got statistics or an alias (:func:`require_every_layer_ran`)
    and every expert got routed tokens. ``counts``: the tokens behind each entry, written
    as the JSON metadata ``entry_tokens`` (an expert's entry counts its routed tokens)."""
    require_every_layer_ran(modules, layers, aliases)
    require_every_expert_ran(experts or {}, layers)
    linear_names = set(modules)
    other_2d = [
        name for name, p in model.named_parameters() if p.ndim == 2 and name not in linear_names
    ]
    probe_dtype = next(iter(modules.values()))[0].weight.dtype
    metadata = {"probe_dtype": str(probe_dtype).replace("torch.", "")}
    if counts:
        metadata["entry_tokens"] = json.dumps(dict(sorted(counts.items())))
    return StatisticsContent(
        layers=layers,
        probes=probes,
        aliases=dict(aliases),
        transposed=[name for name, (_, transposed) in modules.items() if transposed]
        + [name for spec in (experts or {}).values() if getattr(spec.module, "is_transposed", False)
           for name in (spec.up_name, spec.down_name, *spec.entries())],
        other_2d_weights=other_2d,
        tied_weights=tied_weights(model, modules, other_2d),
        metadata=metadata,
    )


def tied_weights(model: torch.nn.Module, modules: dict[str, tuple[torch.nn.Module, bool]],
                 other_2d: list[str]) -> dict[str, str]:
    """``{name: linear weight}`` for each 2-D parameter in ``other_2d`` (no linear map by
    itself) that is the very parameter of a measured linear module: the input embedding
    of a tied-embedding model, which is ``lm_head``'s weight (``docs/method.md``)."""
    params = dict(model.named_parameters())
    owners = {id(getattr(module, "weight", None)): name for name, (module, _) in modules.items()}
    return {name: owners[id(params[name])] for name in other_2d if id(params[name]) in owners}


def require_every_layer_ran(modules, layers, aliases) -> None:
    """Raise unless every linear weight got statistics or an alias (its forward ran)."""
    missing = [n for n in modules if n not in layers and n not in aliases]
    if missing:
        raise CalibrationError(
            f"{len(missing)} linear layers never ran during calibration (e.g. {missing[0]}); "
            "the model's forward skips them"
        )


__all__ = [
    "DecoderStack",
    "StopForward",
    "assemble_content",
    "decoder_stack",
    "linear_modules",
        "model_fingerprint",
    "require_every_layer_ran",
    "resident_probe",
    "skip_logits",
    "stop_forward",
    "tied_weights",
]
