"""The public calibration API: :func:`calibrate` a model into a statistics file, and check one.

For each linear weight ``W`` (``y = W x``) the pass accumulates, over all non-padding
calibration tokens, ``C = E[x x^T] = (1/N) sum_t x_t x_t^T`` in float32, then keeps the
top ``rank`` eigenvectors (``basis``), their eigenvalues and ``trace(C)``. Linears fed the
very same input tensor (q/k/v, gate/up) are measured once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mergekit_arm import __version__
from mergekit_arm.calibration.check import check_statistics
from mergekit_arm.calibration.data import (
    TokenBatches,
    calibration_fingerprint,
    load_calibration_texts,
    tokenize_texts,
)
from mergekit_arm.calibration.full_pass import collect_statistics_all_at_once
from mergekit_arm.calibration.layer_pass import collect_statistics_layerwise
from mergekit_arm.calibration.layout import model_fingerprint
from mergekit_arm.calibration.lazy import LazyCheckpoint, load_lazy_causal_lm
from mergekit_arm.calibration.limits import (
    check_token_ids,
    effective_max_length,
    embedding_rows,
    pad_id_within,
    report_supported_ranks,
)
from mergekit_arm.calibration.mode import choose_mode, folder_config_and_bytes, resolve_mode
from mergekit_arm.calibration.options import CalibrationMode, CalibrationOptions
from mergekit_arm.calibration.renames import add_checkpoint_names, renamed_weights
from mergekit_arm.errors import CalibrationError, ModelLoadError
from mergekit_arm.statistics import StatisticsContent, write_statistics


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
    longest = max((len(t) for t in token_lists), default=1)
    batches = TokenBatches(token_lists, pad_id, batch_size)
    if resolve_mode(mode, model, batch_size, longest) == "layer-sequential":
        return collect_statistics_layerwise(model, batches, rank, progress, device=device)
    return collect_statistics_all_at_once(model, batches, rank, progress)


def _load_for_mode(folder: str | os.PathLike, options: CalibrationOptions) -> tuple[torch.nn.Module, str]:
    """Load a model folder for ``options.mode``: on the device, or lazily for layer-sequential.

    Returns the model and the mode it is calibrated with.
    """
    from mergekit_arm.models import load_causal_lm, resolve_device

    mode = options.mode
    if mode == "auto":
        config, size = folder_config_and_bytes(folder, options.trust_remote_code)
        mode, _ = choose_mode(config, resolve_device(options.device), weight_bytes=size,
                              weights_on_device=False, batch_size=options.batch_size,
                              max_length=options.max_length)
    if mode == "layer-sequential":
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


def check_out_apart(model: str | os.PathLike | torch.nn.Module, out: str | os.PathLike,
                    options: CalibrationOptions, reference: object = None) -> None:
    """Refuse an ``out`` that is, or lies inside, an input: the model folder (of a loaded
    model too, when it came from one), ``--tokenizer``, ``--data``, and the base and adapter
    folders of a ``reference`` ``base+adapter`` (:func:`~mergekit_arm.paths.check_outputs_apart`)."""
    from mergekit_arm.paths import PathRole, check_outputs_apart, input_roles, reference_roles

    if isinstance(model, torch.nn.Module):
        origin = getattr(getattr(model, "config", None), "_name_or_path", None)
        folder = origin if isinstance(origin, str) and origin and Path(origin).is_dir() else None
    else:
        folder = model
    check_outputs_apart([PathRole("OUT", out, "file")], input_roles(
        [("MODEL", folder), ("--tokenizer", options.tokenizer), ("--data", options.data)])
        + reference_roles("MODEL", reference))
    check_out_replaceable(out)


def check_out_replaceable(out: str | os.PathLike) -> None:
    """Refuse an existing, non-empty ``out`` that is not a statistics file: a slip of the
    tab key (``arm-calibrate A B/model.safetensors``) would replace another model's weights,
    a config or a data file that this command does not read."""
    from mergekit_arm.paths import OutputOverlapError, PathRole
    from mergekit_arm.statistics import FORMAT

    path = Path(out).expanduser()
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            found = (handle.metadata() or {}).get("format")
        what = "a safetensors file of model weights"
    except Exception:  # noqa: BLE001 (not a safetensors file, or a broken one)
        if path.suffix == ".safetensors":
            return  # an unreadable .safetensors (a cut earlier write) holds nothing to keep
        found, what = None, "a file"
    if found != FORMAT:
        raise OutputOverlapError(
            f"{PathRole('OUT', out, 'file').named()} already exists and is {what}, not "
            "statistics written by arm-calibrate: it would be replaced. Choose another "
            "output path (or delete that file first if it is yours to replace). Nothing was "
            "written.")


def _stored_names(folder: Path | None) -> list[str] | None:
    """The tensor names of ``folder``'s safetensors files; None for an in-memory model or a
    folder without them (then :func:`renamed_weights` takes transformers' saved names)."""
    if folder is None:
        return None
    try:
        return list(LazyCheckpoint(folder).weight_map)
    except ModelLoadError:
        return None


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

    ``model`` is a model folder, a Hub id (``org/name[@revision]``), ``base+adapter``
    (:mod:`mergekit_arm.model_refs`; the metadata record the resolved revision) or an
    already loaded module (then pass ``tokenizer``).
    ``texts`` overrides ``options.data``.
    """
    from mergekit_arm.model_refs import resolve_model
    from mergekit_arm.models import load_tokenizer, resolve_device

    options = options or CalibrationOptions()
    folder = None
    origin: dict[str, str] = {}
    if isinstance(model, torch.nn.Module):
        check_out_apart(model, out, options)
        if tokenizer is None:
            raise CalibrationError("calibrate() with a loaded model needs its tokenizer")
        label = model_label or getattr(model.config, "_name_or_path", "in-memory model")
    else:  # a folder, Hub id[@revision] or base+adapter (mergekit_arm.model_refs)
        resolved = resolve_model(model, "MODEL", trust_remote_code=options.trust_remote_code)
        check_out_apart(resolved.folder, out, options, reference=model)
        label = model_label or (str(resolved.folder.resolve()) if resolved.is_local
                                else resolved.reference)
        origin = resolved.metadata()
        folder = resolved.folder
        from mergekit_arm.quiet import quiet_transformers

        with quiet_transformers():  # no per-file loading bar: the pass shows its own
            model, mode = _load_for_mode(folder, options)
        if tokenizer is None:
            tokenizer = load_tokenizer(options.tokenizer or folder, options.trust_remote_code)
    if texts is None:
        texts = load_calibration_texts(options.data, options.samples, options.text_mode)
    else:
        texts = [t for t in texts if t.strip()][: options.samples]
    source = str(Path(options.data).resolve()) if options.data else "mergekit-arm default corpus"
    token_lists = tokenize_texts(tokenizer, texts, options.max_length)
    longest = max((len(ids) for ids in token_lists), default=0)
    max_length = effective_max_length(options.max_length, model.config, longest)  # positions
    if longest > max_length:
        token_lists = tokenize_texts(tokenizer, texts, max_length)
    if not token_lists:
        raise CalibrationError(f"calibration data {source} yields no tokens with this tokenizer")
    rows = embedding_rows(model)
    check_token_ids(token_lists, rows, len(tokenizer), options.tokenizer if folder else None,
                    given=folder is None)  # before any forward
    pad_id = pad_id_within(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, rows)
    if folder is None:
        mode = resolve_mode(options.mode, model, options.batch_size, max_length)
    compute = resolve_device(options.device) if folder is not None else None
    content, timings = collect_statistics(
        model, token_lists, pad_id, options.rank, options.batch_size, progress, mode, compute
    )
    # a weight the checkpoint stores under another name (GPT-NeoX embed_out = lm_head)
    add_checkpoint_names(content, renamed_weights(model, _stored_names(folder)))
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
            "max_length": str(max_length),
            "rank": str(options.rank),
            "supported_rank": str(report_supported_ranks(content.layers, options.rank)),
            "created_by": f"mergekit-arm {__version__}",
            **origin,  # Hub revision, adapter: where MODEL came from
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


__all__ = ["CalibrationResult", "calibrate", "check_out_apart", "check_statistics",
           "collect_statistics"]
