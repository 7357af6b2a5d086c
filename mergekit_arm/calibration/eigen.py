"""Eigendecomposition: the top-``rank`` eigenpairs of each accumulated second moment.

For ``C = E[x x^T]`` (symmetric PSD) the file keeps the ``r`` leading eigenvectors
(``basis``), their eigenvalues and ``trace(C)``.
"""

from __future__ import annotations

import torch

from mergekit_arm.calibration.moments import InputSecondMoments, symmetrise_in_place
from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import LayerStatistics

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


def float32_accurate(ascending: torch.Tensor, r: int) -> bool:
    """``0 < lambda_r`` and ``lambda_1 <= FLOAT32_EIGH_MAX_SPREAD * lambda_r`` (ascending input)."""
    largest, rth = float(ascending[-1]), float(ascending[-r])
    return rth > 0.0 and largest <= FLOAT32_EIGH_MAX_SPREAD * rth


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
    if n <= FLOAT64_EIGH_MAX_DIM and not float32_accurate(eigenvalues, r):
        del eigenvalues, vectors
        eigenvalues, vectors = torch.linalg.eigh(c.to(torch.float64))
    del c
    eigenvalues = eigenvalues[-r:].flip(0).clamp_min(0.0)
    vectors = vectors[:, -r:].flip(1)  # a copy of the r kept columns; the rest is freed
    return _as_statistics(eigenvalues, vectors, trace)


def _as_statistics(eigenvalues: torch.Tensor, vectors: torch.Tensor, trace: torch.Tensor
                   ) -> LayerStatistics:
    """Descending eigenpairs as float32 statistics, each column signed so that its
    largest-magnitude entry is positive."""
    r = vectors.shape[1]
    pivot = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors[pivot, torch.arange(r, device=vectors.device)])
    signs[signs == 0] = 1.0
    vectors = vectors * signs
    return LayerStatistics(
        basis=vectors.to(torch.float32).cpu().contiguous(),
        eigenvalues=eigenvalues.to(torch.float32).cpu().contiguous(),
        trace=trace,
    )


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


__all__ = [
    "FLOAT32_EIGH_MAX_SPREAD",
    "FLOAT64_EIGH_MAX_DIM",
    "finalise_moments",
    "float32_accurate",
    "principal_subspace",
]
