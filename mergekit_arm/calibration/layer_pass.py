"""Layer-sequential calibration (GPTQ-style): one decoder layer on the compute device at a time.

The all-at-once pass (:mod:`mergekit_arm.calibration.full_pass`) runs the whole
model per batch and keeps an ``in x in`` float32 accumulator for every distinct linear
input of every layer alive until the end: for a 7B Llama that is about 21 GB of
accumulators on top of the weights. This module computes the very same statistics
layer by layer:

1. **Capture.** Every decoder layer is swapped for a catcher that records the
   arguments the model passes it (attention mask, rotary position embeddings,
   position ids, ...) and returns its input unchanged; the last catcher raises
   :class:`~mergekit_arm.calibration.layout.StopForward`, which stops the forward before
   the final norm and ``lm_head``.
   So the capture costs one embedding lookup per batch and needs no layer weights.
   Every layer's own arguments are kept (models with sliding-window layers pass
   different masks to different layers); they are shared objects, not copies.
2. **Walk.** For ``i = 0..L-1``: bring layer ``i`` onto the compute device (move it,
   or read its weights from the safetensors files when the model was opened with
   :func:`~mergekit_arm.calibration.lazy.load_lazy_causal_lm`), run it over the cached
   hidden states of every batch with the input hooks of
   :class:`~mergekit_arm.calibration.moments.InputSecondMoments` attached, replace the cache with its outputs, eigendecompose that layer's
   accumulators, and give the layer back.
3. **Tail.** Apply the final norm to the cached hidden states and record the input of
   ``lm_head`` (its matmul is skipped: only its input is needed).

Because each layer sees exactly the tensors it sees in a full forward, batch by
batch in the same order, the statistics equal the all-at-once path to float32
rounding (bit for bit on the CPU). Peak memory beyond the weights is one layer's
accumulators plus the cached hidden states, independent of depth.

Supported: causal LMs laid out like Llama / Qwen / Mistral in transformers
(``model.model.layers``, ``model.model.norm``, ``model.lm_head``) whose only linear
outside the decoder layers is ``lm_head``.
:func:`~mergekit_arm.calibration.layout.decoder_stack` returns None for anything else, and ``mode: auto`` then falls back to the all-at-once pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from tqdm.auto import tqdm

from mergekit_arm.calibration.data import TokenBatches
from mergekit_arm.calibration.eigen import finalise_moments
from mergekit_arm.calibration.experts import (
    ExpertsModule,
    expert_probes,
    experts_modules,
    require_every_expert_ran,
)
from mergekit_arm.calibration.layout import (
    DecoderStack,
    StopForward,
    assemble_content,
    decoder_stack,
    linear_modules,
    resident_probe,
    stop_forward,
)
from mergekit_arm.calibration.lazy import LazyPlacement, lazy_checkpoint
from mergekit_arm.calibration.moments import InputSecondMoments
from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import LayerStatistics, StatisticsContent, fingerprint_tensors

# -- devices ---------------------------------------------------------------------------


def _to_device(obj: Any, device: torch.device, memo: dict[int, Any]) -> Any:
    """``obj`` with every tensor moved to ``device``; shared tensors stay shared."""
    if isinstance(obj, torch.Tensor):
        key = id(obj)
        if key not in memo:
            memo[key] = obj.to(device)
        return memo[key]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device, memo) for v in obj)
    if isinstance(obj, list):
        return [_to_device(v, device, memo) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_device(v, device, memo) for k, v in obj.items()}
    return obj


def _is_dispatched(module: torch.nn.Module) -> bool:
    """Whether accelerate hooks place this module's weights (then they are left alone)."""
    return any(hasattr(m, "_hf_hook") for m in module.modules())


def _module_device(module: torch.nn.Module) -> torch.device | None:
    for p in module.parameters():
        return p.device
    return None


class _MovePlacement:
    """Weights live on their storage device; the active module is moved to ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @contextmanager
    def place(self, prefix: str, module: torch.nn.Module):
        original = _module_device(module)
        move = original is not None and original != self.device and not _is_dispatched(module)
        if move:
            module.to(self.device)
        try:
            yield
        finally:
            if move:
                module.to(original)


# -- the pass --------------------------------------------------------------------------


class _Catcher(torch.nn.Module):
    """Stands in for decoder layer ``index`` during the capture; records its arguments."""

    def __init__(self, layer: torch.nn.Module, index: int, record: Callable, stop: bool) -> None:
        super().__init__()
        self.__dict__["_wrapped"] = layer  # not a submodule: keeps named_modules unchanged
        self.index = index
        self._record = record
        self._stop = stop

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_wrapped"], name)

    def forward(self, hidden_states, *args, **kwargs):
        self._record(self.index, hidden_states, args, kwargs)
        if self._stop:
            raise StopForward
        return hidden_states


@dataclass
class _Batch:
    hidden: torch.Tensor
    mask: torch.Tensor
    layer_args: list[tuple[tuple, dict]]  # per layer: positional and keyword arguments


def _capture(model, stack: DecoderStack, token_batches: TokenBatches, device, bar) -> list[_Batch]:
    embed = model.get_input_embeddings()
    input_device = _module_device(embed) or torch.device("cpu")
    if input_device.type == "meta":
        raise CalibrationError("the input embeddings are not loaded; cannot calibrate")
    count = len(stack.layers)
    batches: list[_Batch] = []
    current: dict[str, Any] = {}

    def record(index, hidden, args, kwargs):
        if index == 0:
            current["hidden"] = hidden
        current["layer_args"][index] = (args, kwargs)

    originals = list(stack.layers)
    for i, layer in enumerate(originals):
        stack.layers[i] = _Catcher(layer, i, record, stop=i == count - 1)
    try:
        for ids, mask in token_batches:
            current.clear()
            current["layer_args"] = [None] * count
            try:
                stack.body(input_ids=ids.to(input_device), attention_mask=mask.to(input_device),
                           use_cache=False)
            except StopForward:
                pass
            else:
                raise CalibrationError("the model's forward did not call every decoder layer")
            if any(a is None for a in current["layer_args"]):
                raise CalibrationError("the model's forward skipped a decoder layer")
            memo: dict[int, Any] = {}
            batches.append(_Batch(
                hidden=_to_device(current["hidden"], device, memo),
                mask=mask,
                layer_args=[_to_device(a, device, memo) for a in current["layer_args"]],
            ))
            bar.update(0)
    finally:
        for i, layer in enumerate(originals):
            stack.layers[i] = layer
    return batches


def _named_linears(module: torch.nn.Module, prefix: str) -> dict[str, tuple[torch.nn.Module, bool]]:
    return {f"{prefix}.{name}": entry for name, entry in linear_modules(module).items()}


def _named_experts(module: torch.nn.Module, prefix: str) -> dict[str, ExpertsModule]:
    return {
        f"{prefix}.{name}": ExpertsModule(spec.module, f"{prefix}.{spec.up_name}",
                                          f"{prefix}.{spec.down_name}", spec.num_experts)
        for name, spec in experts_modules(module).items()
    }


def _run_decoder_layer(layer: torch.nn.Module, index: int, batches: list[_Batch], moments) -> None:
    """Run one decoder layer over every cached batch; its outputs replace the cache."""
    for batch in batches:
        moments.set_mask(batch.mask)
        args, kwargs = batch.layer_args[index]
        out = layer(batch.hidden, *args, **kwargs)
        batch.hidden = out[0] if isinstance(out, tuple) else out


def _run_tail(stack: DecoderStack, batches: list[_Batch], moments) -> None:
    """Final norm, then ``lm_head`` up to its input hooks (the matmul itself is skipped)."""
    handle = stack.head.register_forward_pre_hook(stop_forward)  # after the moments hook: runs last
    try:
        for batch in batches:
            moments.set_mask(batch.mask)
            normed = stack.norm(batch.hidden)
            batch.hidden = None
            with suppress(StopForward):
                stack.head(normed)
    finally:
        handle.remove()


def _run_layer_moments(modules, run_all: Callable[[Any], None], rank: int, layers, aliases, timings,
                       counts: dict[str, int], experts: dict[str, ExpertsModule] | None = None):
    moments = InputSecondMoments(modules, experts)
    start = time.perf_counter()
    with moments:
        run_all(moments)
    timings["forward"] += time.perf_counter() - start
    start = time.perf_counter()
    layers.update(finalise_moments(moments, rank))
    aliases.update(moments.aliases)
    counts.update(moments.counts)
    timings["eigen"] += time.perf_counter() - start


def collect_statistics_layerwise(
    model: torch.nn.Module,
    token_batches: TokenBatches,
    rank: int = 64,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[StatisticsContent, dict[str, float]]:
    """Layer-sequential equivalent of :func:`~mergekit_arm.calibration.full_pass.collect_statistics_all_at_once`.

    ``device`` is the compute device (default: where the decoder layers are). Layers
    stored elsewhere (the CPU, or the meta device for :func:`~mergekit_arm.calibration.lazy.load_lazy_causal_lm`) are
    brought there one at a time. Returns the same content plus
    ``metadata["model_fingerprint"]``, computed from the weights while each was resident.
    """
    stack = decoder_stack(model)
    if stack is None:
        raise CalibrationError(
            f"layer-sequential calibration needs a model laid out like Llama/Qwen "
            f"(model.model.layers, model.model.norm, model.lm_head); {type(model).__name__} is "
            "not: use mode all-at-once"
        )
    checkpoint = lazy_checkpoint(model)
    if device is None:
        device = _module_device(stack.layers[0]) or torch.device("cpu")
        if device.type == "meta":
            device = torch.device("cpu")
    device = torch.device(device)
    if checkpoint is not None:
        placement = LazyPlacement(model, checkpoint, device, checkpoint.dtype)
    else:
        placement = _MovePlacement(device)

    timings = {"forward": 0.0, "eigen": 0.0, "capture": 0.0}
    layers: dict[str, LayerStatistics] = {}
    aliases: dict[str, str] = {}
    probes: dict[str, torch.Tensor] = {}
    param_probes: dict[str, torch.Tensor] = {}
    modules_all: dict[str, tuple[torch.nn.Module, bool]] = {}
    experts_all: dict[str, ExpertsModule] = {}
    counts: dict[str, int] = {}
    head_prefix = stack.head_name.rsplit(".", 1)[0]

    def note_weights(prefix: str, module: torch.nn.Module, linears) -> None:
        # Resident now (or onloaded by accelerate's hooks when the model is dispatched).
        for name, _ in module.named_parameters():
            param_probes[f"{prefix}.{name}"] = resident_probe(model, f"{prefix}.{name}")
        for name in linears:
            probes[name] = resident_probe(model, name)

    bar = tqdm(total=len(stack.layers) + 2, unit="layer", desc="calibration (layer-sequential)",
               disable=not progress)
    start = time.perf_counter()
    with torch.inference_mode():
        batches = _capture(model, stack, token_batches, device, bar)
        timings["capture"] = time.perf_counter() - start
        bar.update(1)

        for index, layer in enumerate(stack.layers):
            prefix = f"{stack.layers_prefix}.{index}"
            linears = _named_linears(layer, prefix)
            experts = _named_experts(layer, prefix)
            modules_all.update(linears)
            experts_all.update(experts)
            with placement.place(prefix, layer):
                run = partial(_run_decoder_layer, layer, index, batches)
                _run_layer_moments(linears, run, rank, layers, aliases, timings, counts, experts)
                require_every_expert_ran(experts, layers)  # at this layer, not after the last
                note_weights(prefix, layer, linears)
                probes.update(expert_probes(model, experts))
            bar.update(1)

        # Tail: final norm, then the input of lm_head (its matmul is skipped).
        head_linears = {stack.head_name: (stack.head, False)}
        modules_all.update(head_linears)
        with placement.place(stack.norm_prefix, stack.norm), _MovePlacement(device).place(
            head_prefix, stack.head
        ):
            run = partial(_run_tail, stack, batches)
            _run_layer_moments(head_linears, run, rank, layers, aliases, timings, counts)
            note_weights(stack.norm_prefix, stack.norm, {})
            probes[stack.head_name] = resident_probe(model, stack.head_name)
        bar.update(1)
    bar.close()
    del batches

    # Every other parameter (embeddings, and lm_head when untied) for the fingerprint.
    layer_and_norm = {id(p) for p in stack.layers.parameters()} | {id(p) for p in stack.norm.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in layer_and_norm and name not in param_probes:
            param_probes[name] = resident_probe(model, name)

    content = assemble_content(model, modules_all, layers, aliases, probes, experts_all, counts)
    names = [name for name, _ in model.named_parameters()]
    content.metadata["model_fingerprint"] = fingerprint_tensors(
        (name, param_probes[name]) for name in sorted(names)
    )
    return content, timings


__all__ = ["collect_statistics_layerwise"]
