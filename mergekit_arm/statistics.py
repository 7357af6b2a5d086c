"""The activation statistics file: the contract between ``arm-calibrate`` and the merge.

A safetensors file. For every 2-D linear weight ``<name>`` (as named in the checkpoint
and in MergeKit, e.g. ``model.layers.0.self_attn.q_proj.weight``):

* ``<name>::basis``        float32 ``(in, r_max)``: orthonormal top eigenvectors of ``E[x x^T]``
* ``<name>::eigenvalues``  float32 ``(r_max,)``: descending
* ``<name>::trace``        float32 ``()``: sum of all eigenvalues, ``E[|x|^2]``
* ``<name>::probe``        float32 ``(k,)``: the weight's values at fixed positions, so a
  merge can tell whether the file belongs to the tensor it is given

Weights that share an input (q/k/v, gate/up) store basis/eigenvalues/trace once; the
``aliases`` metadata maps each sharing name to the stored one. String metadata:
``format``, ``format_version``, ``model``, ``model_fingerprint``,
``calibration_fingerprint``, ``num_samples``, ``num_tokens``, ``max_length``,
``rank``, ``probe_dtype``, ``aliases``, ``transposed``, ``other_2d_weights``,
``calibration_source``, ``entry_tokens`` (the tokens behind each stored entry: an MoE
expert sees only its routed tokens, fewer than ``num_tokens``) and
``supported_rank`` (the fewest directions any entry's tokens support:
:func:`~mergekit_arm.rotation.supported_rank`) (JSON where structured).

``tied_weights`` (JSON) maps a 2-D weight that is no linear map by itself but shares its
storage with a linear weight (the input embedding of a tied-embedding model: one matrix
with ``lm_head``) to that linear weight's entry: the matrix is rotated with the head's
input statistics under either name (``docs/method.md``, "Tied embeddings"). Files written
before it existed have none; the merge then takes the tie from the other file, if any.

This module writes (:func:`write_statistics`) and reads (:class:`ActivationStatistics`,
:func:`load_statistics`) the file; the in-memory types, probes and fingerprints are
:mod:`mergekit_arm.statistics_data`.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mergekit_arm._io import atomic_file
from mergekit_arm.errors import StatisticsError
from mergekit_arm.statistics_data import (  # noqa: F401 (re-exported: their old home)
    FORMAT,
    FORMAT_VERSION,
    ORTHONORMAL_TOLERANCE,
    PROBE_SIZE,
    SEPARATOR,
    LayerStatistics,
    StatisticsContent,
    fingerprint_tensors,
    orthonormality_error,
    probe_indices,
    probes_match,
    weight_probe,
)


def _dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype):
        raise StatisticsError(f"unknown probe dtype {name!r} in statistics metadata")
    return dtype


def write_statistics(path: str | os.PathLike, content: StatisticsContent) -> Path:
    """Validate ``content`` and write it to ``path`` atomically; return the path."""
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in content.layers.items():
        _validate_layer(name, layer, source=str(path))
        tensors[f"{name}{SEPARATOR}basis"] = layer.basis.to(torch.float32).contiguous().cpu()
        tensors[f"{name}{SEPARATOR}eigenvalues"] = layer.eigenvalues.to(torch.float32).contiguous().cpu()
        tensors[f"{name}{SEPARATOR}trace"] = layer.trace.to(torch.float32).reshape(()).cpu()
    for name, probe in content.probes.items():
        tensors[f"{name}{SEPARATOR}probe"] = probe.to(torch.float32).contiguous().cpu()
    for alias, target in content.aliases.items():
        if target not in content.layers:
            raise StatisticsError(f"alias {alias} points to {target}, which has no statistics")
    for tied, target in content.tied_weights.items():
        if target not in content.layers and target not in content.aliases:
            raise StatisticsError(f"tied weight {tied} points to {target}, which has no statistics")
    metadata = {
        **{key: str(value) for key, value in content.metadata.items()},
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aliases": json.dumps(content.aliases, sort_keys=True),
        "transposed": json.dumps(sorted(content.transposed)),
        "other_2d_weights": json.dumps(sorted(content.other_2d_weights)),
        "tied_weights": json.dumps(content.tied_weights, sort_keys=True),
    }
    counts = json.loads(content.metadata.get("entry_tokens", "{}"))  # the pass's own, and
    counts.update({n: int(lay.tokens) for n, lay in content.layers.items() if lay.tokens is not None})
    if counts:
        metadata["entry_tokens"] = json.dumps(counts, sort_keys=True)
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def _validate_layer(name: str, layer: LayerStatistics, source: str) -> None:
    basis, eig, trace = layer.basis, layer.eigenvalues, layer.trace
    where = f"statistics of {name} in {source}"
    if basis.ndim != 2 or eig.ndim != 1 or basis.shape[1] != eig.shape[0]:
        raise StatisticsError(
            f"{where}: basis {tuple(basis.shape)} and eigenvalues {tuple(eig.shape)} do not fit "
            "(expected (in, r) and (r,)); re-run arm-calibrate"
        )
    if trace.numel() != 1:
        raise StatisticsError(f"{where}: trace must be a scalar; re-run arm-calibrate")
    for label, tensor in (("eigenvalues", eig), ("trace", trace)):
        if not bool(torch.isfinite(tensor).all()):
            raise StatisticsError(f"{where}: {label} holds NaN or Inf; re-run arm-calibrate")
    error = orthonormality_error(basis)
    if not error <= ORTHONORMAL_TOLERANCE:  # NaN compares False: a NaN/Inf basis lands here
        if not bool(torch.isfinite(basis).all()):
            raise StatisticsError(f"{where}: basis holds NaN or Inf; re-run arm-calibrate")
        raise StatisticsError(
            f"{where}: basis columns are not orthonormal (max |B^T B - I| = {error:.2e}); "
            "the file is corrupt or was not written by arm-calibrate"
        )


class ActivationStatistics:
    """Lazy, thread-safe reader of a statistics file (tensors read on first use).

    ``stats[name]`` returns the :class:`LayerStatistics` of a weight (aliases resolved);
    ``name in stats`` tells whether the file has statistics for it.
    """

    def __init__(self, path: str | os.PathLike, cache_size: int = 64) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StatisticsError(
                f"activation statistics file {self.path} does not exist; "
                f"create it with `arm-calibrate MODEL {self.path}`"
            )
        try:
            self._handle = safe_open(str(self.path), framework="pt", device="cpu")
            self.metadata: dict[str, str] = dict(self._handle.metadata() or {})
            keys = list(self._handle.keys())
        except Exception as error:
            raise StatisticsError(
                f"cannot read activation statistics file {self.path} ({error}); it is not a "
                "safetensors file or is truncated: re-run arm-calibrate"
            ) from error
        fmt = self.metadata.get("format")
        if fmt != FORMAT:
            raise StatisticsError(
                f"{self.path} is not a mergekit-arm statistics file (format={fmt!r}, expected "
                f"{FORMAT!r}); pass the file written by arm-calibrate"
            )
        version = self.metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise StatisticsError(
                f"{self.path} has statistics format version {version!r}; this mergekit-arm reads "
                f"version {FORMAT_VERSION}: re-run arm-calibrate with this version"
            )
        try:
            self.aliases: dict[str, str] = json.loads(self.metadata.get("aliases", "{}"))
            self.transposed: frozenset[str] = frozenset(json.loads(self.metadata.get("transposed", "[]")))
            self.other_2d_weights: frozenset[str] = frozenset(
                json.loads(self.metadata.get("other_2d_weights", "[]"))
            )
            self.tied_weights: dict[str, str] = {  # embedding -> head entry (tied models)
                str(k): str(v) for k, v in json.loads(self.metadata.get("tied_weights", "{}")).items()}
            self.entry_tokens: dict[str, int] = {  # by stored entry; absent: num_tokens
                str(k): int(v) for k, v in json.loads(self.metadata.get("entry_tokens", "{}")).items()}
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            raise StatisticsError(f"{self.path}: corrupt metadata ({error}); re-run arm-calibrate") from error
        self._stored = {k.rsplit(SEPARATOR, 1)[0] for k in keys if k.endswith(f"{SEPARATOR}basis")}
        self._probed = {k.rsplit(SEPARATOR, 1)[0] for k in keys if k.endswith(f"{SEPARATOR}probe")}
        dangling = sorted(f"{a} -> {t}" for a, t in self.aliases.items() if t not in self._stored)
        dangling += sorted(f"{a} -> {t} (tied)" for a, t in self.tied_weights.items()
                           if t not in self._stored and t not in self.aliases)
        if dangling:
            raise StatisticsError(
                f"{self.path}: {len(dangling)} shared-input aliases point to entries the file "
                f"does not hold ({', '.join(dangling[:3])}{', ...' if len(dangling) > 3 else ''}); "
                "the file is incomplete or corrupt: re-run arm-calibrate"
            )
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, LayerStatistics] = OrderedDict()
        self._shared: OrderedDict[str, LayerStatistics] = OrderedDict()  # by stored name, no probe
        self._cache_size = cache_size
        self.probe_dtype = _dtype_from_name(self.metadata.get("probe_dtype", "float32"))

    # -- metadata -------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.metadata.get("model", "?")

    @property
    def model_fingerprint(self) -> str:
        return self.metadata.get("model_fingerprint", "")

    @property
    def calibration_fingerprint(self) -> str:
        return self.metadata.get("calibration_fingerprint", "")

    @property
    def num_tokens(self) -> int:
        return int(self.metadata.get("num_tokens", 0))

    def tokens(self, name: str) -> int | None:
        """Tokens behind the entry of ``name`` (aliases resolved): its own count, else the
        file's ``num_tokens``; None for a file that records neither."""
        stored = self.aliases.get(name, name)
        return self.entry_tokens.get(stored, self.num_tokens or None)

    @property
    def weight_names(self) -> frozenset[str]:
        """Every weight name this file has statistics for (aliases included)."""
        return frozenset(self._stored | set(self.aliases))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._stored or name in self.aliases)

    def __len__(self) -> int:
        return len(self.weight_names)

    def __repr__(self) -> str:
        return f"ActivationStatistics({str(self.path)!r}, model={self.model!r}, weights={len(self)})"

    # -- tensors --------------------------------------------------------------
    def _read(self, key: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(key)
        except Exception as error:
            raise StatisticsError(f"cannot read {key} from {self.path} ({error}); re-run arm-calibrate") from error

    def __getitem__(self, name: str) -> LayerStatistics:
        stored = self.aliases.get(name, name)
        if stored not in self._stored:
            raise KeyError(name)
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None:
                self._cache.move_to_end(name)
                return cached
            shared = self._shared.get(stored)  # q/k/v, gate/up: read and validated once
            if shared is None:
                shared = LayerStatistics(
                    basis=self._read(f"{stored}{SEPARATOR}basis"),
                    eigenvalues=self._read(f"{stored}{SEPARATOR}eigenvalues"),
                    trace=self._read(f"{stored}{SEPARATOR}trace"),
                )
                _validate_layer(name, shared, source=str(self.path))
                self._shared[stored] = shared
                if len(self._shared) > self._cache_size:
                    self._shared.popitem(last=False)
            else:
                self._shared.move_to_end(stored)
            layer = LayerStatistics(
                basis=shared.basis, eigenvalues=shared.eigenvalues, trace=shared.trace,
                probe=self._read(f"{name}{SEPARATOR}probe") if name in self._probed else None,
                tokens=self.tokens(name),
            )
            self._cache[name] = layer
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return layer

    def validate_all(self) -> None:
        """Read and validate every entry (``arm-calibrate --check`` and tests)."""
        for name in sorted(self.weight_names):
            self[name]

    def check_weight(self, name: str, weight: torch.Tensor, model_label: str, *,
                     tensor: str | None = None) -> None:
        """Raise if ``weight`` is not the tensor these statistics were computed from.

        Checks the input dimension against the basis and the stored probe values of entry
        ``name``. ``tensor`` names the weight as the merge sees it where that differs from
        the entry (a MergeKit ``slices:`` source layer, a tied embedding); default ``name``.
        """
        layer = self[name]
        tensor = tensor or name
        in_axis = 0 if name in self.transposed else 1
        if weight.ndim != 2 or weight.shape[in_axis] != layer.in_features:
            raise StatisticsError(
                f"statistics for {name} in {self.path} have input size {layer.in_features}, but "
                f"{model_label} has {tensor} of shape {tuple(weight.shape)}: the file was computed "
                "from a different model; run arm-calibrate on this model"
            )
        if layer.probe is not None and not probes_match(layer.probe, weight, self.probe_dtype):
            if same_model(self.model, model_label):
                raise StatisticsError(
                    f"statistics file {self.path} was computed from {model_label}, but its "
                    f"{tensor} no longer has the values the file recorded for {name}: the model "
                    f"was changed after calibration. Run `arm-calibrate {model_label} <file>` "
                    "again and point `activations` at the new file"
                )
            raise StatisticsError(
                f"statistics file {self.path} was computed from {self.model}, not from {model_label}: "
                f"the values of {tensor} differ. Run `arm-calibrate {model_label} <file>` and point "
                "`activations` at the new file (or set verify_statistics: false to skip this check)"
            )


def same_model(a: str, b: str) -> bool:
    """Whether two model labels (paths as written, or hub ids) name the same model."""
    if a == b:
        return True
    try:
        return Path(a).exists() and Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


_OPEN_LOCK = threading.Lock()
_OPEN: OrderedDict[tuple[str, int, int], ActivationStatistics] = OrderedDict()
_MAX_OPEN = 8  # readers kept open (a long stream writes a new file every step)


def load_statistics(path: str | os.PathLike) -> ActivationStatistics:
    """Open a statistics file, sharing one reader per (path, mtime, size) across threads."""
    resolved = Path(path).expanduser()
    try:
        info = resolved.stat()
    except FileNotFoundError:
        raise StatisticsError(
            f"activation statistics file {resolved} does not exist; "
            f"create it with `arm-calibrate MODEL {resolved}`"
        ) from None
    key = (str(resolved.resolve()), info.st_mtime_ns, info.st_size)
    with _OPEN_LOCK:
        reader = _OPEN.get(key)
        if reader is None:
            # absolute: the shared reader's path must not depend on the current directory
            reader = ActivationStatistics(resolved.absolute())
            _OPEN[key] = reader
            while len(_OPEN) > _MAX_OPEN:
                _OPEN.popitem(last=False)
        else:
            _OPEN.move_to_end(key)
        return reader


def clear_cache() -> None:
    """Forget every opened statistics file (after rewriting files in place)."""
    with _OPEN_LOCK:
        _OPEN.clear()


def metadata_summary(stats: ActivationStatistics) -> Mapping[str, str]:
    """Human-readable metadata (for ``arm-calibrate --check``)."""
    keys = ("model", "model_fingerprint", "calibration_fingerprint", "calibration_source",
            "num_samples", "num_tokens", "max_length", "rank", "supported_rank", "probe_dtype",
            "created_by")
    origin = ("model_revision", "adapter", "adapter_revision")  # Hub / base+adapter only
    return {key: stats.metadata.get(key, "") for key in keys} | {
        key: stats.metadata[key] for key in origin if key in stats.metadata}
