"""Layer-sequential calibration (GPTQ-style): one decoder layer on the compute device at a time.

The all-at-once pass (:func:`mergekit_arm.calibrate.collect_statistics`) runs the whole
model per batch and keeps an ``in x in`` float32 accumulator for every distinct linear
input of every layer alive until the end: for a 7B Llama that is about 21 GB of
accumulators on top of the weights. This module computes the very same statistics
layer by layer:

1. **Capture.** Every decoder layer is swapped for a catcher that records the
   arguments the model passes it (attention mask, rotary position embeddings,
   position ids, ...) and returns its input unchanged; the last catcher raises a
   private exception that stops the forward before the final norm and ``lm_head``.
   So the capture costs one embedding lookup per batch and needs no layer weights.
   Every layer's own arguments are kept (models with sliding-window layers pass
   different masks to different layers); they are shared objects, not copies.
2. **Walk.** For ``i = 0..L-1``: bring layer ``i`` onto the compute device (move it,
   or read its weights from the safetensors files when the model was opened with
   :func:`load_lazy_causal_lm`), run it over the cached hidden states of every
   batch with the input hooks of :class:`~mergekit_arm.calibrate.InputSecondMoments`
   attached, replace the cache with its outputs, eigendecompose that layer's
   accumulators, and give the layer back.
3. **Tail.** Apply the final norm to the cached hidden states and record the input of
   ``lm_head`` (its matmul is skipped: only its input is needed).

Because each layer sees exactly the tensors it sees in a full forward, batch by
batch in the same order, the statistics equal the all-at-once path to float32
rounding (bit for bit on the CPU). Peak memory beyond the weights is one layer's
accumulators plus the cached hidden states, independent of depth.

Supported: causal LMs laid out like Llama / Qwen / Mistral in transformers
(``model.model.layers``, ``model.model.norm``, ``model.lm_head``) whose only linear
outside the decoder layers is ``lm_head``. :func:`decoder_stack` returns None for
anything else, and ``mode: auto`` then falls back to the all-at-once pass.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mergekit_arm.calibrate import _stop_forward, _StopForward
from mergekit_arm.errors import CalibrationError, ModelLoadError
from mergekit_arm.statistics import (
    LayerStatistics,
    StatisticsContent,
    fingerprint_tensors,
)

__all__ = [
    "DecoderStack",
    "LazyCheckpoint",
    "collect_statistics_layerwise",
    "decoder_stack",
    "load_lazy_causal_lm",
]




# -- model layout ----------------------------------------------------------------------


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
    """The decoder stack of a Llama/Qwen-style causal LM, or None when the layout differs."""
    from mergekit_arm.calibrate import linear_modules

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


# -- lazy loading ----------------------------------------------------------------------


class LazyCheckpoint:
    """Tensors of a model folder's safetensors files, read one at a time on demand."""

    def __init__(self, folder: str | os.PathLike) -> None:
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.folder.glob("*.safetensors"))
            weight_map = None
        if not files:
            raise ModelLoadError(f"{self.folder} has no .safetensors files to read lazily")
        self._handles = {f: safe_open(str(self.folder / f), framework="pt", device="cpu") for f in files}
        if weight_map is None:
            weight_map = {key: f for f, h in self._handles.items() for key in h.keys()}  # noqa: SIM118
        self.weight_map: dict[str, str] = weight_map

    def __contains__(self, name: object) -> bool:
        return name in self.weight_map

    def get(self, name: str) -> torch.Tensor:
        try:
            return self._handles[self.weight_map[name]].get_tensor(name)
        except KeyError:
            raise ModelLoadError(f"{name} is not in the safetensors files of {self.folder}") from None

    def nbytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in self._handles)


class _LazyPlacement:
    """Parameters live on the meta device; the active module's are read from disk."""

    def __init__(self, model: torch.nn.Module, checkpoint: LazyCheckpoint, device: torch.device,
                 dtype: torch.dtype | None) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype

    def load(self, prefix: str, module: torch.nn.Module, device: torch.device) -> None:
        from accelerate.utils import set_module_tensor_to_device

        for name, param in module.named_parameters():
            if param.device.type != "meta":
                continue
            full = f"{prefix}.{name}" if prefix else name
            value = self.checkpoint.get(full)
            dtype = self.dtype if value.is_floating_point() and self.dtype is not None else None
            set_module_tensor_to_device(module, name, device, value=value, dtype=dtype)

    def release(self, module: torch.nn.Module) -> None:
        from accelerate.utils import set_module_tensor_to_device

        for name, _ in list(module.named_parameters()):
            set_module_tensor_to_device(module, name, "meta")

    @contextmanager
    def place(self, prefix: str, module: torch.nn.Module):
        self.load(prefix, module, self.device)
        try:
            yield
        finally:
            self.release(module)


def load_lazy_causal_lm(
    path: str | os.PathLike,
    dtype: str | torch.dtype | None = "auto",
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """A causal LM whose decoder layers stay on the meta device until calibration reads them.

    Embeddings, the final norm and ``lm_head`` are read into CPU memory; every decoder
    layer's weights are read from the safetensors files only while that layer runs in
    :func:`collect_statistics_layerwise` and dropped right after. So a model larger than
    RAM can be calibrated. The returned module carries the reader as
    ``model._arm_lazy_checkpoint`` and runs only through the layer-sequential pass.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from mergekit_arm.models import check_model_folder, resolve_dtype

    folder = check_model_folder(path)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:
        raise ModelLoadError(f"cannot read the config of {folder}: {error}") from error
    checkpoint = LazyCheckpoint(folder)
    wanted = resolve_dtype(dtype)
    if wanted == "auto":
        wanted = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(wanted, str):
            wanted = getattr(torch, wanted)
        if not isinstance(wanted, torch.dtype):
            first = next(iter(checkpoint.weight_map))
            wanted = checkpoint.get(first).dtype
    try:
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(
                config, dtype=wanted, trust_remote_code=trust_remote_code
            )
    except ValueError as error:
        raise ModelLoadError(
            f"{folder} is not a causal language model that transformers can load "
            f"(model_type={getattr(config, 'model_type', '?')!r}): {error}"
        ) from error
    text_config = getattr(config, "get_text_config", lambda: config)()
    if getattr(text_config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        model.tie_weights()  # init_empty_weights skips the tying that from_config does
    stack = decoder_stack(model)
    if stack is None:
        raise CalibrationError(
            f"{folder} ({type(model).__name__}) does not have the model.model.layers / "
            "model.model.norm / model.lm_head layout that layer-sequential calibration needs"
        )
    placement = _LazyPlacement(model, checkpoint, torch.device("cpu"), wanted)
    layer_params = {id(p) for p in stack.layers.parameters()}
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    for module_name, module in model.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) in layer_params or param.device.type != "meta":
                continue
            full = f"{module_name}.{name}" if module_name else name
            if full not in checkpoint and module is head and not tied:
                raise ModelLoadError(f"{full} is missing from the checkpoint in {folder}")
            if full in checkpoint:
                _load_only(placement, module_name, module, name)
    if head is not None and head.weight.device.type == "meta":
        # lm_head is tied to the embeddings and not stored separately.
        head.weight = model.get_input_embeddings().weight
    model.eval()
    model._arm_lazy_checkpoint = checkpoint
    model._arm_lazy_dtype = wanted
    return model


def _load_only(placement: _LazyPlacement, prefix: str, module: torch.nn.Module, name: str) -> None:
    from accelerate.utils import set_module_tensor_to_device

    value = placement.checkpoint.get(f"{prefix}.{name}" if prefix else name)
    set_module_tensor_to_device(module, name, "cpu", value=value, dtype=placement.dtype)


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
            raise _StopForward
        return hidden_states


@dataclass
class _Batch:
    hidden: torch.Tensor
    mask: torch.Tensor
    layer_args: list[tuple[tuple, dict]]  # per layer: positional and keyword arguments


def _capture(model, stack: DecoderStack, token_lists, pad_id, batch_size, device, bar) -> list[_Batch]:
    from mergekit_arm.calibrate import iter_batches

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
        for ids, mask in iter_batches(token_lists, batch_size, pad_id):
            current.clear()
            current["layer_args"] = [None] * count
            try:
                stack.body(input_ids=ids.to(input_device), attention_mask=mask.to(input_device),
                           use_cache=False)
            except _StopForward:
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
    from mergekit_arm.calibrate import linear_modules

    return {f"{prefix}.{name}": entry for name, entry in linear_modules(module).items()}


def _run_decoder_layer(layer: torch.nn.Module, index: int, batches: list[_Batch], moments) -> None:
    """Run one decoder layer over every cached batch; its outputs replace the cache."""
    for batch in batches:
        moments.set_mask(batch.mask)
        args, kwargs = batch.layer_args[index]
        out = layer(batch.hidden, *args, **kwargs)
        batch.hidden = out[0] if isinstance(out, tuple) else out


def _run_tail(stack: DecoderStack, batches: list[_Batch], moments) -> None:
    """Final norm, then ``lm_head`` up to its input hooks (the matmul itself is skipped)."""
    handle = stack.head.register_forward_pre_hook(_stop_forward)  # after the moments hook: runs last
    try:
        for batch in batches:
            moments.set_mask(batch.mask)
            normed = stack.norm(batch.hidden)
            batch.hidden = None
            with suppress(_StopForward):
                stack.head(normed)
    finally:
        handle.remove()


def _run_layer_moments(modules, run_all: Callable[[Any], None], rank: int, layers, aliases, timings):
    from mergekit_arm.calibrate import InputSecondMoments, finalise_moments

    moments = InputSecondMoments(modules)
    start = time.perf_counter()
    with moments:
        run_all(moments)
    timings["forward"] += time.perf_counter() - start
    start = time.perf_counter()
    layers.update(finalise_moments(moments, rank))
    aliases.update(moments.aliases)
    timings["eigen"] += time.perf_counter() - start


def collect_statistics_layerwise(
    model: torch.nn.Module,
    token_lists: Sequence[Sequence[int]],
    pad_id: int,
    rank: int = 64,
    batch_size: int = 8,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[StatisticsContent, dict[str, float]]:
    """Layer-sequential equivalent of :func:`mergekit_arm.calibrate.collect_statistics`.

    ``device`` is the compute device (default: where the decoder layers are). Layers
    stored elsewhere (the CPU, or the meta device for :func:`load_lazy_causal_lm`) are
    brought there one at a time. Returns the same content plus
    ``metadata["model_fingerprint"]``, computed from the weights while each was resident.
    """
    from mergekit_arm.calibrate import _resident_probe, assemble_content

    stack = decoder_stack(model)
    if stack is None:
        raise CalibrationError(
            f"layer-sequential calibration needs a model laid out like Llama/Qwen "
            f"(model.model.layers, model.model.norm, model.lm_head); {type(model).__name__} is "
            "not: use mode all-at-once"
        )
    checkpoint = getattr(model, "_arm_lazy_checkpoint", None)
    if device is None:
        device = _module_device(stack.layers[0]) or torch.device("cpu")
        if device.type == "meta":
            device = torch.device("cpu")
    device = torch.device(device)
    if checkpoint is not None:
        placement = _LazyPlacement(model, checkpoint, device, getattr(model, "_arm_lazy_dtype", None))
    else:
        placement = _MovePlacement(device)

    timings = {"forward": 0.0, "eigen": 0.0, "capture": 0.0}
    layers: dict[str, LayerStatistics] = {}
    aliases: dict[str, str] = {}
    probes: dict[str, torch.Tensor] = {}
    param_probes: dict[str, torch.Tensor] = {}
    modules_all: dict[str, tuple[torch.nn.Module, bool]] = {}
    head_prefix = stack.head_name.rsplit(".", 1)[0]

    def note_weights(prefix: str, module: torch.nn.Module, linears) -> None:
        # Resident now (or onloaded by accelerate's hooks when the model is dispatched).
        for name, _ in module.named_parameters():
            param_probes[f"{prefix}.{name}"] = _resident_probe(model, f"{prefix}.{name}")
        for name in linears:
            probes[name] = _resident_probe(model, name)

    bar = tqdm(total=len(stack.layers) + 2, unit="layer", desc="calibration (layer-sequential)",
               disable=not progress)
    start = time.perf_counter()
    with torch.inference_mode():
        batches = _capture(model, stack, token_lists, pad_id, batch_size, device, bar)
        timings["capture"] = time.perf_counter() - start
        bar.update(1)

        for index, layer in enumerate(stack.layers):
            prefix = f"{stack.layers_prefix}.{index}"
            linears = _named_linears(layer, prefix)
            modules_all.update(linears)
            with placement.place(prefix, layer):
                run = partial(_run_decoder_layer, layer, index, batches)
                _run_layer_moments(linears, run, rank, layers, aliases, timings)
                note_weights(prefix, layer, linears)
            bar.update(1)

        # Tail: final norm, then the input of lm_head (its matmul is skipped).
        head_linears = {stack.head_name: (stack.head, False)}
        modules_all.update(head_linears)
        with placement.place(stack.norm_prefix, stack.norm), _MovePlacement(device).place(
            head_prefix, stack.head
        ):
            run = partial(_run_tail, stack, batches)
            _run_layer_moments(head_linears, run, rank, layers, aliases, timings)
            note_weights(stack.norm_prefix, stack.norm, {})
            probes[stack.head_name] = _resident_probe(model, stack.head_name)
        bar.update(1)
    bar.close()
    del batches

    # Every other parameter (embeddings, and lm_head when untied) for the fingerprint.
    layer_and_norm = {id(p) for p in stack.layers.parameters()} | {id(p) for p in stack.norm.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in layer_and_norm and name not in param_probes:
            param_probes[name] = _resident_probe(model, name)

    missing = [n for n in modules_all if n not in layers and n not in aliases]
    if missing:
        raise CalibrationError(
            f"{len(missing)} linear layers never ran during calibration (e.g. {missing[0]}); "
            "the model's forward skips them"
        )
    content = assemble_content(model, modules_all, layers, aliases, probes)
    names = [name for name, _ in model.named_parameters()]
    content.metadata["model_fingerprint"] = fingerprint_tensors(
        (name, param_probes[name]) for name in sorted(names)
    )
    return content, timings


# -- choosing the mode -----------------------------------------------------------------

#: ``mode: auto`` picks layer-sequential from this many parameters on even when the
#: all-at-once pass would fit. Measured on one CPU thread (benchmarks/bench_calibrate.py,
#: whole pass, modes interleaved): all-at-once is 5-13% faster for the 0.1M-0.7M test models,
#: the two are within 1-2% at 31M-57M, and layer-sequential is ~5% faster at SmolLM2-135M's
#: shape (30 layers); its memory is also flat in depth.
LARGE_MODEL_PARAMETERS = 100_000_000
#: ... and whenever the all-at-once pass would need more than this share of free memory.
MEMORY_HEADROOM = 0.7


def free_memory(device: str | torch.device) -> int:
    """Bytes free on ``device`` (CUDA: ``mem_get_info``; CPU: available RAM)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 1 << 62


def accumulator_bytes(config) -> int:
    """float32 bytes of the all-at-once pass's ``in x in`` accumulators (Llama-like layout)."""
    text = getattr(config, "get_text_config", lambda: config)()
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    inter = int(getattr(text, "intermediate_size", 0) or 0)
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    head_dim = int(getattr(text, "head_dim", 0) or (hidden // heads if heads else 0))
    per_layer = 2 * hidden**2 + (heads * head_dim) ** 2 + inter**2
    return 4 * (layers * per_layer + hidden**2)


def parameter_count(config) -> int:
    """Approximate parameter count of a Llama-like config (for the auto choice only)."""
    text = getattr(config, "get_text_config", lambda: config)()
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    inter = int(getattr(text, "intermediate_size", 0) or 0)
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    kv = int(getattr(text, "num_key_value_heads", 0) or heads)
    head_dim = int(getattr(text, "head_dim", 0) or (hidden // heads if heads else 0))
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    attn = hidden * head_dim * (2 * heads + 2 * kv)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return layers * (attn + 3 * hidden * inter) + vocab * hidden * (1 if tied else 2)


def choose_mode(
    config,
    device: str | torch.device,
    *,
    weight_bytes: int,
    weights_on_device: bool,
    batch_size: int,
    max_length: int,
) -> tuple[str, str]:
    """``(mode, reason)`` for ``mode: auto``.

    Layer-sequential when the all-at-once pass (weights unless already there, every
    accumulator, one batch of float32 logits) would take more than ``MEMORY_HEADROOM``
    of the free memory of ``device``, or when the model has at least
    ``LARGE_MODEL_PARAMETERS`` (100M) parameters, where it is also the faster mode;
    all-at-once otherwise (small models, where it is as fast or faster). The caller still
    falls back to all-at-once when the layout is not supported.
    """
    text = getattr(config, "get_text_config", lambda: config)()
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    logits = 2 * 4 * batch_size * max_length * vocab
    need = (0 if weights_on_device else weight_bytes) + accumulator_bytes(config) + logits
    free = free_memory(device)
    gib = 1 << 30
    if need > MEMORY_HEADROOM * free:
        return "layer-sequential", (
            f"all-at-once would need ~{need / gib:.1f} GiB of the {free / gib:.1f} GiB free on {device}"
        )
    params = parameter_count(config)
    if params >= LARGE_MODEL_PARAMETERS:
        return "layer-sequential", (
            f"~{params / 1e6:.0f}M parameters (>= {LARGE_MODEL_PARAMETERS / 1e6:.0f}M: faster "
            "layer by layer, memory flat in depth)")
    return "all-at-once", f"~{need / gib:.2f} GiB fits in the {free / gib:.1f} GiB free on {device}"


def folder_config_and_bytes(folder: str | os.PathLike, trust_remote_code: bool = False):
    """``(config, bytes of the safetensors files)`` of a model folder, without loading weights."""
    from transformers import AutoConfig

    from mergekit_arm.models import check_model_folder

    folder = check_model_folder(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:
        raise ModelLoadError(f"cannot read the config of {folder}: {error}") from error
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return config, size
