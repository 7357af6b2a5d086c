"""Eigendecomposition: the top-``rank`` eigenpairs of each accumulated second moment.

For ``C = E[x x^T]`` (symmetric PSD) the file keeps the ``r`` leading eigenvectors
(``basis``), their eigenvalues and ``trace(C)``. Wide inputs use a top-r solver
(:func:`subspace_eigenpairs`: block subspace iteration with a Rayleigh-Ritz step, ``O(n^2 k)``
per step instead of the ``O(n^3)`` of a full ``eigh``); narrow ones, ranks close to the
width and a solver that does not converge use the full ``eigh``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

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


#: The top-r solver runs when the input is at least this many times wider than its block
#: ``k = 2r``. Measured side by side with benchmarks/bench_eigh.py (one CPU thread, r = 64,
#: docs/performance.md): at 1536 wide (ratio 12) it takes 0.45-0.51x the time of ``eigh``
#: (0.15x where float64 is needed) and never more (1.00x on a flat spectrum); at 1024 wide
#: (ratio 8) a flat spectrum took 1.43x, so below ratio 12 the full ``eigh`` runs.
SUBSPACE_MIN_WIDTH_RATIO = 12
#: Ritz pairs are accepted when ``|C v_i - theta_i v_i| <= SUBSPACE_TOL * theta_i`` for every
#: kept ``i``: on the benchmark's spectra the eigenvalues are then within 2e-6 (relative) and
#: the subspace within 0.05 degree of float64 ``eigh`` (float32 ``eigh`` is accepted up to
#: 0.25 degree; calibration noise is ~10x that).
SUBSPACE_TOL = 1e-4
#: Steps before the solver gives up (then the full ``eigh`` runs).
SUBSPACE_MAX_STEPS = 60
#: A residual below ``SUBSPACE_FLOOR * eps * theta_1`` is rounding: accepted as converged.
SUBSPACE_FLOOR = 10.0


def spread_within(eigenvalues_desc: torch.Tensor, max_spread: float) -> bool:
    """``0 < lambda_r`` and ``lambda_1 <= max_spread * lambda_r`` (descending input)."""
    largest, rth = float(eigenvalues_desc[0]), float(eigenvalues_desc[-1])
    return rth > 0.0 and largest <= max_spread * rth


def float32_accurate(ascending: torch.Tensor, r: int) -> bool:
    """``0 < lambda_r`` and ``lambda_1 <= FLOAT32_EIGH_MAX_SPREAD * lambda_r`` (ascending input)."""
    return spread_within(ascending[-r:].flip(0), FLOAT32_EIGH_MAX_SPREAD)


def subspace_block(n: int, r: int) -> int:
    """Block size ``k = 2r`` (oversampling ``p = r``) of the top-r solver, at most ``n``."""
    return min(n, 2 * r)


def use_subspace_iteration(n: int, r: int) -> bool:
    """Whether :func:`principal_subspace` tries the top-r solver for an ``n``-wide input."""
    return n >= SUBSPACE_MIN_WIDTH_RATIO * subspace_block(n, r)


@dataclass
class RitzPairs:
    """The result of :func:`subspace_eigenpairs`: descending eigenvalues, eigenvectors (columns),
    the final block basis (a warm start in another dtype) and whether it converged."""

    eigenvalues: torch.Tensor
    vectors: torch.Tensor
    basis: torch.Tensor
    converged: bool
    steps: int


def subspace_eigenpairs(
    c: torch.Tensor,
    r: int,
    *,
    block: int | None = None,
    tol: float = SUBSPACE_TOL,
    max_steps: int = SUBSPACE_MAX_STEPS,
    start: torch.Tensor | None = None,
    seed: int = 0,
) -> RitzPairs:
    """Top-``r`` eigenpairs of a symmetric PSD ``C`` by block subspace iteration.

    ``Q_0 = orth(C G)`` (``G`` an ``n x k`` Gaussian from ``seed``, or ``start``); each step
    computes ``Y = C Q``, the Rayleigh-Ritz pairs ``Q^T Y = U Theta U^T``, ``v_i = Q u_i`` and
    the residuals ``r_i = Y u_i - theta_i v_i``, and stops when every kept
    ``|r_i| <= max(tol, SUBSPACE_FLOOR eps theta_1 / theta_i) theta_i``, else ``Q <- orth(Y)``.
    The span converges like ``(lambda_{k+1} / lambda_r)^steps``. Runs in ``C``'s dtype.
    """
    n = c.shape[0]
    k = block or subspace_block(n, r)
    if start is None:
        generator = torch.Generator(device=c.device).manual_seed(seed)
        start = torch.randn(n, k, generator=generator, device=c.device, dtype=c.dtype)
        start = c @ start
    q = torch.linalg.qr(start.to(c.dtype))[0]
    floor = SUBSPACE_FLOOR * torch.finfo(c.dtype).eps
    for step in range(1, max_steps + 1):
        y = c @ q
        small = q.T @ y
        theta, u = torch.linalg.eigh((small + small.T) * 0.5)
        theta, u = theta.flip(0)[:r], u.flip(1)[:, :r]
        vectors = q @ u
        residual = torch.linalg.vector_norm(y @ u - vectors * theta, dim=0)
        top = float(theta[0])
        bound = torch.maximum(tol * theta, torch.full_like(theta, floor * top))
        if top > 0.0 and bool((residual <= bound).all()):
            return RitzPairs(theta, vectors, q, True, step)
        q = torch.linalg.qr(y)[0]
    return RitzPairs(theta, vectors, q, False, max_steps)


def principal_subspace(second_moment: torch.Tensor, rank: int, *, overwrite: bool = False,
                       solver: Literal["auto", "eigh"] = "auto") -> LayerStatistics:
    """Top-``rank`` eigenpairs of a symmetric PSD matrix ``C`` (``C`` is first symmetrised).

    Inputs at least ``SUBSPACE_MIN_WIDTH_RATIO`` times wider than the solver's block use
    :func:`subspace_eigenpairs`; the others, or when it does not converge, the full ``eigh``.
    Either runs in float32; when the top eigenvalues spread by more than
    ``FLOAT32_EIGH_MAX_SPREAD`` (``lambda_1 / lambda_r``, where float32 is not accurate
    enough) it is redone in float64 (the solver warm-started from its float32 basis), unless
    the input is wider than ``FLOAT64_EIGH_MAX_DIM``.
    Columns are ordered by descending eigenvalue and signed so that each column's
    largest-magnitude entry is positive (a deterministic, sign-free convention).
    ``overwrite=True`` lets the function symmetrise a float32 ``second_moment`` in place and
    use it as its workspace; otherwise it works on a copy. Only the kept ``r`` columns of the
    eigenvectors are copied. ``solver="eigh"`` always uses the full ``eigh`` (benchmarks).
    """
    n = second_moment.shape[0]
    r = min(rank, n)
    if overwrite and second_moment.dtype == torch.float32:
        c = second_moment
    else:
        c = second_moment.to(torch.float32, copy=True)
    symmetrise_in_place(c)
    trace = torch.diagonal(c).sum().cpu()
    if solver == "auto" and use_subspace_iteration(n, r):
        found = subspace_eigenpairs(c, r, tol=SUBSPACE_TOL, max_steps=SUBSPACE_MAX_STEPS)
        if n <= FLOAT64_EIGH_MAX_DIM and not spread_within(found.eigenvalues, FLOAT32_EIGH_MAX_SPREAD):
            found = subspace_eigenpairs(c.to(torch.float64), r, tol=SUBSPACE_TOL,
                                        max_steps=SUBSPACE_MAX_STEPS, start=found.basis)
        if found.converged:
            del c
            return _as_statistics(found.eigenvalues.clamp_min(0.0), found.vectors, trace)
        del found
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
    moments are spent afterwards. Each entry keeps its token count ``N`` (``tokens``).
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
        second_moment, count = acc.second_moment(), acc.count
        del acc
        layers[name] = replace(principal_subspace(second_moment, rank, overwrite=True), tokens=count)
    return layers


__all__ = [
    "FLOAT32_EIGH_MAX_SPREAD",
    "FLOAT64_EIGH_MAX_DIM",
    "SUBSPACE_MIN_WIDTH_RATIO",
    "SUBSPACE_TOL",
    "RitzPairs",
    "finalise_moments",
    "float32_accurate",
    "principal_subspace",
    "spread_within",
    "subspace_eigenpairs",
    "use_subspace_iteration",
]
