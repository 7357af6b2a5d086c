"""The in-memory side of the activation statistics file (:mod:`mergekit_arm.statistics`):
its format constants, :class:`LayerStatistics` (one weight's input subspace) and
:class:`StatisticsContent` (a whole file), the probes that tie a file's entry to a weight,
the fingerprint that ties it to a model, and the orthonormality measure of a basis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from mergekit_arm.subspace_selection import supported_rank

FORMAT = "mergekit-arm-activations"
FORMAT_VERSION = "1"
PROBE_SIZE = 64
ORTHONORMAL_TOLERANCE = 1e-3
SEPARATOR = "::"


@dataclass(frozen=True)
class LayerStatistics:
    """Principal subspace of one weight's input: ``basis`` (in x r), descending ``eigenvalues``."""

    basis: torch.Tensor
    eigenvalues: torch.Tensor
    trace: torch.Tensor
    probe: torch.Tensor | None = None
    tokens: int | None = None  # the tokens behind it (None: unknown, a file without counts)

    @property
    def supported_rank(self) -> int:
        """Leading directions its tokens determine (:func:`~mergekit_arm.rotation.supported_rank`)."""
        return supported_rank(self.eigenvalues, self.tokens)

    @property
    def in_features(self) -> int:
        return int(self.basis.shape[0])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


def probe_indices(shape: Iterable[int], size: int = PROBE_SIZE) -> torch.Tensor:
    """Fixed flat positions (evenly spread, always including the last) of a tensor's probe."""
    numel = 1
    for dim in shape:
        numel *= int(dim)
    count = min(size, numel)
    return torch.linspace(0, numel - 1, count, dtype=torch.float64).round().long()


def weight_probe(weight: torch.Tensor, size: int = PROBE_SIZE) -> torch.Tensor:
    """The weight's values at :func:`probe_indices`, as float32 on the CPU."""
    idx = probe_indices(weight.shape, size).to(weight.device)
    return weight.detach().reshape(-1)[idx].to(torch.float32).cpu()


def probes_match(stored: torch.Tensor, weight: torch.Tensor, stored_dtype: torch.dtype) -> bool:
    """Whether ``weight`` has the stored probe values, compared at the coarser precision.

    Both sides are rounded to whichever of (the probe's dtype, the weight's dtype)
    has fewer mantissa bits, so a bf16 calibration matches an fp32 merge of the same
    checkpoint exactly, while a fine-tuned sibling checkpoint does not.
    """
    current = weight_probe(weight, size=stored.numel())
    coarse = max((stored_dtype, weight.dtype), key=lambda dt: torch.finfo(dt).eps)
    return bool(torch.equal(stored.to(coarse), current.to(coarse)))


def fingerprint_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over names, shapes and bytes (tensors are hashed as contiguous CPU data)."""
    digest = hashlib.sha256()
    for name, tensor in named:
        data = tensor.detach().contiguous().cpu()
        digest.update(name.encode())
        digest.update(str(tuple(data.shape)).encode())
        digest.update(str(data.dtype).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


@dataclass
class StatisticsContent:
    """Everything a statistics file holds, in memory (what the calibrator writes)."""

    layers: dict[str, LayerStatistics]
    probes: dict[str, torch.Tensor] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    transposed: list[str] = field(default_factory=list)
    other_2d_weights: list[str] = field(default_factory=list)
    tied_weights: dict[str, str] = field(default_factory=dict)  # embedding -> head entry
    metadata: dict[str, str] = field(default_factory=dict)


def orthonormality_error(basis: torch.Tensor) -> float:
    """``max |B^T B - I|`` in float32; NaN or Inf when ``B`` holds a NaN/Inf (its column's
    diagonal entry ``sum_i B_ij^2`` does), so one product checks both."""
    if basis.numel() == 0:
        return 0.0
    b = basis if basis.dtype == torch.float32 else basis.to(torch.float32)
    gram = b.T @ b
    gram.diagonal().sub_(1.0)
    return float(gram.abs().amax())
