"""The mode choice: all-at-once or layer-sequential, for ``mode: auto``."""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from mergekit_arm.calibration.layout import decoder_stack
from mergekit_arm.calibration.lazy import lazy_checkpoint
from mergekit_arm.calibration.options import CalibrationMode
from mergekit_arm.errors import CalibrationError, ModelLoadError
from mergekit_arm.models import check_model_folder

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


class _Sizes(NamedTuple):
    """The sizes of a Llama-like config (0 where missing); ``experts`` > 0 for a
    mixture-of-experts config (Mixtral ``num_local_experts``, Qwen3-MoE ``num_experts``),
    whose experts' width is ``moe_inter``."""

    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0
    moe_inter: int = 0


def _sizes(config) -> _Sizes:
    text = getattr(config, "get_text_config", lambda: config)()

    def size(name: str) -> int:
        return int(getattr(text, name, 0) or 0)

    hidden, heads = size("hidden_size"), size("num_attention_heads")
    experts = size("num_local_experts") or size("num_experts")
    return _Sizes(hidden, size("intermediate_size"), size("num_hidden_layers"), heads,
                  size("num_key_value_heads") or heads,
                  size("head_dim") or (hidden // heads if heads else 0), size("vocab_size"),
                  experts, size("moe_intermediate_size") or size("intermediate_size"))


def accumulator_bytes(config) -> int:
    """float32 bytes of the all-at-once pass's ``in x in`` accumulators (Llama-like layout;
    with experts: the router's input and each expert's two inputs)."""
    z = _sizes(config)
    mlp = z.hidden**2 + z.experts * (z.hidden**2 + z.moe_inter**2) if z.experts else z.inter**2
    per_layer = 2 * z.hidden**2 + (z.heads * z.head_dim) ** 2 + mlp
    return 4 * (z.layers * per_layer + z.hidden**2)


def parameter_count(config) -> int:
    """Approximate parameter count of a Llama-like config (for the auto choice only)."""
    z = _sizes(config)
    attn = z.hidden * z.head_dim * (2 * z.heads + 2 * z.kv_heads)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    mlp = (z.experts * (3 * z.hidden * z.moe_inter + z.hidden) if z.experts
           else 3 * z.hidden * z.inter)
    return z.layers * (attn + mlp) + z.vocab * z.hidden * (1 if tied else 2)


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

    folder = check_model_folder(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:
        raise ModelLoadError(f"cannot read the config of {folder}: {error}") from error
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return config, size


def resolve_mode(
    mode: CalibrationMode, model: torch.nn.Module, batch_size: int, max_length: int
) -> str:
    """The mode a loaded ``model`` is calibrated with (``auto`` resolved by :func:`choose_mode`)."""
    if mode not in ("auto", "all-at-once", "layer-sequential"):
        raise CalibrationError(f"unknown calibration mode {mode!r}")
    if lazy_checkpoint(model) is not None:
        return "layer-sequential"  # weights on the meta device: nothing else can run it
    if mode != "auto":
        return mode
    if decoder_stack(model) is None:
        return "all-at-once"
    config = getattr(model, "config", None)
    if config is None:
        return "all-at-once"
    device = next(model.parameters()).device
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    chosen, _ = choose_mode(config, device, weight_bytes=size, weights_on_device=True,
                            batch_size=batch_size, max_length=max_length)
    return chosen


__all__ = [
    "LARGE_MODEL_PARAMETERS",
    "MEMORY_HEADROOM",
    "accumulator_bytes",
    "choose_mode",
    "folder_config_and_bytes",
    "free_memory",
    "parameter_count",
    "resolve_mode",
]
