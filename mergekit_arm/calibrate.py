"""Calibration: principal subspaces of every linear layer's inputs, written as a statistics file.

For each linear weight ``W`` (``y = W x``) the pass accumulates, over all non-padding
calibration tokens, ``C = E[x x^T] = (1/N) sum_t x_t x_t^T`` in float32, then keeps
the top ``rank`` eigenvectors (``basis``), their eigenvalues and ``trace(C)``.
Linears fed the very same input tensor (q/k/v, gate/up) are measured once.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from mergekit_arm import __version__
from mergekit_arm.data import TextMode, load_calibration_texts
from mergekit_arm.errors import CalibrationError, ModelLoadError
from mergekit_arm.statistics import (
    LayerStatistics,
    StatisticsContent,
    fingerprint_tensors,
    weight_probe,
    write_statistics,
)

CalibrationMode = Literal["auto", "all-at-once", "layer-sequential"]


class CalibrationOptions(BaseModel):
    """Options of one calibration pass (the flags of ``arm-calibrate``)."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="calibration data; None = shipped corpus")
    samples: int = Field(128, ge=1, description="number of texts used")
    max_length: int = Field(512, ge=2, description="tokens per text (truncated)")
    batch_size: int = Field(8, ge=1)
    rank: int = Field(64, ge=1, description="eigenvectors stored per input (r_max)")
    device: str = "auto"
    dtype: str = "auto"
    text_mode: TextMode = "paragraph"
    tokenizer: str | None = Field(None, description="tokenizer folder; None = the model's")
    trust_remote_code: bool = False
    mode: CalibrationMode = Field(
        "auto",
        description="all-at-once: hooks on the whole model; layer-sequential: one decoder layer "
        "on the device at a time (mergekit_arm.layerwise); auto: layer-sequential for large "
        "models or when all-at-once would not fit on the device",
    )


# -- tokens --------------------------------------------------------------------------


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``; texts with no token dropped."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    return [list(ids) for ids in encoded["input_ids"] if len(ids) > 0]


def calibration_fingerprint(token_lists: Sequence[Sequence[int]]) -> str:
    """SHA-256 of the exact token sequences (two files agree iff they saw the same tokens)."""
    digest = hashlib.sha256()
    for ids in token_lists:
        digest.update(len(ids).to_bytes(4, "little"))
        digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


def iter_batches(
    token_lists: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded ``(input_ids, attention_mask)`` batches in the given order."""
    for start in range(0, len(token_lists), batch_size):
        chunk = token_lists[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        yield ids, mask


# -- math ----------------------------------------------------------------------------


#: ``x^T x`` is accumulated as row panels of its lower block triangle, one panel per
#: ``PANEL_WIDTH`` input features, at most ``MAX_PANELS``: ``(p + 1) / 2p`` of the flops of
#: the full product. Measured on one CPU thread (docs/performance.md): 8 panels cut the
#: accumulation of a 1536-wide input by ~37% and of a 576-wide one by ~32%; more panels
#: gain nothing (smaller matmuls), and below 64 features per panel the split does not pay.
PANEL_WIDTH = 64
MAX_PANELS = 8


def lower_panels(dim: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of the panels that cover the lower block triangle."""
    panels = min(MAX_PANELS, max(1, dim // PANEL_WIDTH))
    edges = [round(i * dim / panels) for i in range(panels + 1)]
    return list(zip(edges[:-1], edges[1:]))


def accumulate_lower_gram(total: torch.Tensor, x: torch.Tensor, panels: list[tuple[int, int]]) -> None:
    """``total[r0:r1, :r1] += x[:, r0:r1]^T x[:, :r1]`` per panel: the lower block triangle of
    ``x^T x`` (diagonal blocks in full); :func:`symmetrise_lower` completes it."""
    for r0, r1 in panels:
        total[r0:r1, :r1].addmm_(x[:, r0:r1].T, x[:, :r1])


def symmetrise_lower(total: torch.Tensor, panels: list[tuple[int, int]]) -> torch.Tensor:
    """Copy the lower off-diagonal blocks onto the upper ones, in place: ``x^T x`` in full."""
    for r0, r1 in panels[1:]:
        total[:r0, r0:r1].copy_(total[r0:r1, :r0].T)
    return total


#: float32 ``eigh`` is kept when the top-r eigenvalues span at most this ratio
#: ``lambda_1 / lambda_r``; above it the decomposition is redone in float64. Measured on
#: SmolLM2-135M's second moments, with massive-activation outliers added (docs/performance.md):
#: up to a spread of ~1e3 float32 matches float64 to <= 0.2 degree (top-64 subspace) and a
#: relative eigenvalue error <= 3e-5; from ~5e3 on its error grows to 10-90 degrees, because
#: its backward error is ``~eps32 * lambda_1``, which then reaches the eigenvalue gaps near r.
FLOAT32_EIGH_MAX_SPREAD = 1e3
#: Above this input size the eigendecomposition stays in float32 whatever the spread: a
#: float64 copy of a 28672-wide second moment (a 70B down_proj input) is 6.6 GB, and
#: ``eigh`` holds three such arrays (input, eigenvectors, workspace).
FLOAT64_EIGH_MAX_DIM = 8192


def symmetrise_in_place(c: torch.Tensor) -> torch.Tensor:
    """``C <- (C + C^T) / 2`` in place, one row panel at a time (temporary: one panel)."""
    for r0, r1 in lower_panels(c.shape[0]):
        mean = c[r0:r1, :r1].add(c[:r1, r0:r1].T).mul_(0.5)
        c[r0:r1, :r1].copy_(mean)
        c[:r1, r0:r1].copy_(mean.T)
    return c


def principal_subspace(second_moment: torch.Tensor, rank: int, *, overwrite: bool = False
                       ) -> LayerStatistics:
    """Top-``rank`` eigenpairs of a symmetric PSD matrix ``C`` (``C`` is first symmetrised).

    ``eigh`` runs in float32; when its top eigenvalues spread by more than
    ``FLOAT32_EIGH_MAX_SPREAD`` (``lambda_1 / lambda_r``, where float32 is not accurate
    enough) it is redone in float64, unless the input is wider than ``FLOAT64_EIGH_MAX_DIM``.
    Columns are ordered by descending eigenvalue and signed so that each column's
    largest-magnitude entry is positive (a deterministic, sign-free convention).
    ``overwrite=True`` lets the function symmetrise a float32 ``second_moment`` in place and
    use it as its workspace; otherwise it works on a copy. Only the kept ``r`` columns of the
    eigenvectors are copied.
    """
    n = second_moment.shape[0]
    r = min(rank, n)
    if overwrite and second_moment.dtype == torch.float32:
        c = second_moment
    else:
        c = second_moment.to(torch.float32, copy=True)
    symmetrise_in_place(c)
    trace = torch.diagonal(c).sum().cpu()
    eigenvalues, vectors = torch.linalg.eigh(c)
    if n <= FLOAT64_EIGH_MAX_DIM and not _float32_accurate(eigenvalues, r):
        del eigenvalues, vectors
        eigenvalues, vectors = torch.linalg.eigh(c.to(torch.float64))
    del c
    eigenvalues = eigenvalues[-r:].flip(0).clamp_min(0.0)
    vectors = vectors[:, -r:].flip(1)  # a copy of the r kept columns; the rest is freed
    pivot = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors[pivot, torch.arange(r, device=vectors.device)])
    signs[signs == 0] = 1.0
    vectors.mul_(signs)
    return LayerStatistics(
        basis=vectors.to(torch.float32).cpu().contiguous(),
        eigenvalues=eigenvalues.to(torch.float32).cpu().contiguous(),
        trace=trace,
    )


def _float32_accurate(ascending: torch.Tensor, r: int) -> bool:
    """``0 < lambda_r`` and ``lambda_1 <= FLOAT32_EIGH_MAX_SPREAD * lambda_r`` (ascending input)."""
    largest, rth = float(ascending[-1]), float(ascending[-r])
    return rth > 0.0 and largest <= FLOAT32_EIGH_MAX_SPREAD * rth


# -- hooks ---------------------------------------------------------------------------


def linear_modules(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, bool]]:
    """``weight name -> (module, transposed)`` for every ``nn.Linear`` and GPT-2 ``Conv1D``."""
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
    return found


@dataclass
class _Accumulator:
    total: torch.Tensor  # lower block triangle of sum_t x_t x_t^T, float32
    panels: list[tuple[int, int]]
    count: int = 0

    def second_moment(self) -> torch.Tensor:
        """``E[x x^T] = sum / count`` in full, computed in place (the accumulator is spent)."""
        return symmetrise_lower(self.total, self.panels).div_(self.count)


class InputSecondMoments:
    """Forward pre-hooks accumulating ``sum x x^T`` per distinct linear input.

    Call :meth:`set_mask` with the batch's attention mask before each forward so
    padding tokens are excluded. A module whose input is the very tensor object the
    previous hooked module received (q/k/v, gate/up) is recorded as an alias.
    """

    def __init__(self, modules: dict[str, tuple[torch.nn.Module, bool]]) -> None:
        self.modules = modules
        self.accumulators: dict[str, _Accumulator] = {}
        self.aliases: dict[str, str] = {}
        self._mask: torch.Tensor | None = None
        self._last_input: torch.Tensor | None = None
        self._last_owner: str | None = None
        self._handles: list = []

    def __enter__(self) -> InputSecondMoments:
        for name, (module, _) in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last_input = None

    def set_mask(self, mask: torch.Tensor) -> None:
        self._mask = mask.bool()
        self._last_input = None

    def _select_tokens(self, x: torch.Tensor) -> torch.Tensor:
        mask = self._mask
        if mask is not None:
            if x.ndim == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
                return x[mask.to(x.device)]
            if x.ndim == 2 and x.shape[0] == mask.numel():
                return x[mask.reshape(-1).to(x.device)]
        return x.reshape(-1, x.shape[-1])

    def _hook(self, name: str):
        def hook(module, args):
            if not args:
                return
            x = args[0]
            if x is self._last_input and self._last_owner is not None:
                owner = self._last_owner
                if self.aliases.setdefault(name, owner) != owner:
                    raise CalibrationError(f"input sharing of {name} changed between batches")
                return
            self._last_input, self._last_owner = x, name
            if name in self.aliases:
                raise CalibrationError(f"input sharing of {name} changed between batches")
            tokens = self._select_tokens(x.detach()).to(torch.float32)
            acc = self.accumulators.get(name)
            if acc is None:
                dim = tokens.shape[-1]
                with torch.inference_mode(False):  # a normal tensor: finalised in place later
                    total = torch.zeros(dim, dim, dtype=torch.float32, device=tokens.device)
                acc = _Accumulator(total, lower_panels(dim))
                self.accumulators[name] = acc
            accumulate_lower_gram(acc.total, tokens, acc.panels)
            acc.count += int(tokens.shape[0])

        return hook


def finalise_moments(moments: InputSecondMoments, rank: int) -> dict[str, LayerStatistics]:
    """Principal subspace of every accumulated input (``E[x x^T] = sum / count``).

    Each accumulator is completed and eigendecomposed in place, then dropped, so the
    moments are spent afterwards.
    """
    layers: dict[str, LayerStatistics] = {}
    for name in list(moments.accumulators):
        acc = moments.accumulators.pop(name)
        if acc.count == 0:
            raise CalibrationError(f"no tokens reached {name}; the calibration data yields no tokens")
        if not bool(torch.isfinite(acc.total).all()):
            raise CalibrationError(
                f"the inputs of {name} hold NaN/Inf on the calibration text: the model's weights "
                "are corrupt or it overflows in this dtype; check the checkpoint (NaN weights) "
                "or calibrate with --dtype float32"
            )
        second_moment = acc.second_moment()
        del acc
        layers[name] = principal_subspace(second_moment, rank, overwrite=True)
    return layers


def assemble_content(
    model: torch.nn.Module,
    modules: dict[str, tuple[torch.nn.Module, bool]],
    layers: dict[str, LayerStatistics],
    aliases: dict[str, str],
    probes: dict[str, torch.Tensor],
) -> StatisticsContent:
    """The file content of a finished pass (shared by both calibration modes)."""
    linear_names = set(modules)
    other_2d = [
        name for name, p in model.named_parameters() if p.ndim == 2 and name not in linear_names
    ]
    probe_dtype = next(iter(modules.values()))[0].weight.dtype
    return StatisticsContent(
        layers=layers,
        probes=probes,
        aliases=dict(aliases),
        transposed=[name for name, (_, transposed) in modules.items() if transposed],
        other_2d_weights=other_2d,
        metadata={"probe_dtype": str(probe_dtype).replace("torch.", "")},
    )


# -- the pass ------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by a forward pre-hook to end a forward early (its remaining output is unused)."""


def _stop_forward(module: torch.nn.Module, args) -> None:
    raise _StopForward


@dataclass
class CalibrationResult:
    """What a pass produced, with timings (seconds) and counts."""

    path: Path
    num_samples: int
    num_tokens: int
    seconds_forward: float
    seconds_eigen: float
    mode: str = "all-at-once"


def collect_statistics(
    model: torch.nn.Module,
    token_lists: Sequence[Sequence[int]],
    pad_id: int,
    rank: int = 64,
    batch_size: int = 8,
    progress: bool = True,
    mode: CalibrationMode = "auto",
    device: str | torch.device | None = None,
) -> tuple[StatisticsContent, dict[str, float]]:
    """Run ``model`` over the token lists and return the statistics (no file I/O).

    ``mode`` as in :class:`CalibrationOptions`; ``device`` is the compute device of the
    layer-sequential pass (default: where the model is). Both give the same statistics.
    """
    if resolve_mode(mode, model, batch_size, max((len(t) for t in token_lists), default=1)) == (
        "layer-sequential"
    ):
        from mergekit_arm.layerwise import collect_statistics_layerwise

        return collect_statistics_layerwise(
            model, token_lists, pad_id, rank, batch_size, progress, device=device
        )
    modules = linear_modules(model)
    if not modules:
        raise CalibrationError("the model has no nn.Linear layers to calibrate")
    device = next(model.parameters()).device
    timings = {"forward": 0.0, "eigen": 0.0}
    moments = InputSecondMoments(modules)
    start = time.perf_counter()
    bar = tqdm(total=len(token_lists), unit="sample", desc="calibration", disable=not progress)
    with torch.inference_mode(), moments, _skip_logits(model):
        for ids, mask in iter_batches(token_lists, batch_size, pad_id):
            moments.set_mask(mask)
            with suppress(_StopForward):
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            bar.update(ids.shape[0])
    bar.close()
    timings["forward"] = time.perf_counter() - start

    start = time.perf_counter()
    layers = finalise_moments(moments, rank)
    timings["eigen"] = time.perf_counter() - start

    missing = [n for n in modules if n not in layers and n not in moments.aliases]
    if missing:
        raise CalibrationError(
            f"{len(missing)} linear layers never ran during calibration (e.g. {missing[0]}); "
            "the model's forward skips them"
        )
    probes = {name: _resident_probe(model, name) for name in modules}
    content = assemble_content(model, modules, layers, moments.aliases, probes)
    return content, timings


@contextmanager
def _skip_logits(model: torch.nn.Module) -> Iterator[None]:
    """For a decoder-stack layout (:func:`~mergekit_arm.layerwise.decoder_stack`), end each
    forward in a pre-hook of ``lm_head`` that runs after the input hooks: the model's own
    forward computes everything up to ``lm_head``'s input, and the logits (vocab x tokens,
    ~21% of SmolLM2-135M's forward) are never computed. Other layouts run in full."""
    from mergekit_arm.layerwise import decoder_stack

    stack = decoder_stack(model)
    if stack is None:
        yield
        return
    handle = stack.head.register_forward_pre_hook(_stop_forward)  # after the input hooks
    try:
        yield
    finally:
        handle.remove()


def resolve_mode(
    mode: CalibrationMode, model: torch.nn.Module, batch_size: int, max_length: int
) -> str:
    """The mode a loaded ``model`` is calibrated with (``auto`` resolved)."""
    from mergekit_arm.layerwise import choose_mode, decoder_stack

    if mode not in ("auto", "all-at-once", "layer-sequential"):
        raise CalibrationError(f"unknown calibration mode {mode!r}")
    if getattr(model, "_arm_lazy_checkpoint", None) is not None:
        return "layer-sequential"  # weights on the meta device: nothing else can run it
    if mode != "auto":
        return mode
    if decoder_stack(model) is None:
        return "all-at-once"
    device = next(model.parameters()).device
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    config = getattr(model, "config", None)
    if config is None:
        return "all-at-once"
    chosen, _ = choose_mode(config, device, weight_bytes=size, weights_on_device=True,
                            batch_size=batch_size, max_length=max_length)
    return chosen


def _resident_probe(model: torch.nn.Module, name: str) -> torch.Tensor:
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
    return fingerprint_tensors((name, _resident_probe(model, name)) for name in names)


def _load_for_mode(folder: str | os.PathLike, options: CalibrationOptions) -> tuple[torch.nn.Module, str]:
    """Load a model folder for ``options.mode``: on the device, or lazily for layer-sequential.

    Returns the model and the mode it is calibrated with.
    """
    from mergekit_arm.models import load_causal_lm

    mode = options.mode
    if mode == "auto":
        from mergekit_arm.layerwise import choose_mode, folder_config_and_bytes
        from mergekit_arm.models import resolve_device

        config, size = folder_config_and_bytes(folder, options.trust_remote_code)
        mode, _ = choose_mode(config, resolve_device(options.device), weight_bytes=size,
                              weights_on_device=False, batch_size=options.batch_size,
                              max_length=options.max_length)
    if mode == "layer-sequential":
        from mergekit_arm.layerwise import load_lazy_causal_lm

        try:
            return load_lazy_causal_lm(folder, options.dtype, options.trust_remote_code), mode
        except ModelLoadError:
            # Checkpoint names differ from the module's: keep the layers in CPU memory instead.
            return load_causal_lm(folder, options.dtype, "cpu", options.trust_remote_code), mode
        except CalibrationError:
            if options.mode == "layer-sequential":
                raise
            mode = "all-at-once"  # layout not supported
    return load_causal_lm(folder, options.dtype, options.device, options.trust_remote_code), mode


def calibrate(
    model: str | os.PathLike | torch.nn.Module,
    out: str | os.PathLike,
    options: CalibrationOptions | None = None,
    *,
    tokenizer=None,
    texts: Sequence[str] | None = None,
    model_label: str | None = None,
    progress: bool = True,
) -> CalibrationResult:
    """Compute the activation statistics of ``model`` and write them to ``out`` atomically.

    ``model`` is a model folder or an already loaded module (then pass ``tokenizer``).
    ``texts`` overrides ``options.data``.
    """
    from mergekit_arm.models import load_tokenizer, resolve_device

    options = options or CalibrationOptions()
    folder = None
    if isinstance(model, torch.nn.Module):
        if tokenizer is None:
            raise CalibrationError("calibrate() with a loaded model needs its tokenizer")
        label = model_label or getattr(model.config, "_name_or_path", "in-memory model")
    else:
        label = model_label or str(Path(model).expanduser().resolve())
        folder = model
        model, mode = _load_for_mode(folder, options)
        if tokenizer is None:
            tokenizer = load_tokenizer(options.tokenizer or folder, options.trust_remote_code)
    if texts is None:
        texts = load_calibration_texts(options.data, options.samples, options.text_mode)
    else:
        texts = [t for t in texts if t.strip()][: options.samples]
    source = str(Path(options.data).resolve()) if options.data else "mergekit-arm default corpus"
    token_lists = tokenize_texts(tokenizer, texts, options.max_length)
    if not token_lists:
        raise CalibrationError(f"calibration data {source} yields no tokens with this tokenizer")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if folder is None:
        mode = resolve_mode(options.mode, model, options.batch_size, options.max_length)
    compute = resolve_device(options.device) if folder is not None else None
    content, timings = collect_statistics(
        model, token_lists, pad_id, options.rank, options.batch_size, progress, mode, compute
    )
    num_tokens = sum(len(ids) for ids in token_lists)
    content.metadata.update(
        {
            "model": label,
            "model_fingerprint": content.metadata.get("model_fingerprint")
            or model_fingerprint(model),
            "calibration_mode": mode,
            "calibration_fingerprint": calibration_fingerprint(token_lists),
            "calibration_source": str(source),
            "num_samples": str(len(token_lists)),
            "num_tokens": str(num_tokens),
            "max_length": str(options.max_length),
            "rank": str(options.rank),
            "created_by": f"mergekit-arm {__version__}",
        }
    )
    path = write_statistics(out, content)
    return CalibrationResult(
        path=path,
        num_samples=len(token_lists),
        num_tokens=num_tokens,
        seconds_forward=timings["forward"],
        seconds_eigen=timings["eigen"],
        mode=mode,
    )


__all__ = [
    "CalibrationOptions",
    "CalibrationResult",
    "calibrate",
    "calibration_fingerprint",
    "collect_statistics",
    "principal_subspace",
    "tokenize_texts",
]
