"""Which leading directions of a weight's input statistics the ARM step uses: the rank
from ``rank`` / ``energy`` / ``eigengap`` (:func:`select_rank`), the directions the
calibration tokens support (:func:`supported_rank`, :func:`cap_to_supported`), and the
kept columns of the stored basis (:func:`select_subspace`). Pure functions, float32.
The rotation built on them is :mod:`mergekit_arm.rotation`.
"""

from __future__ import annotations

import torch


def _f32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float32 else tensor.to(torch.float32)


def select_rank(
    eigenvalues: torch.Tensor,
    trace: torch.Tensor | float | None = None,
    rank: int = 64,
    energy: float | None = None,
    eigengap: bool = False,
) -> int:
    """Number of leading directions to keep.

    ``r = min(rank, len(eigenvalues))``; with ``energy`` set, the smallest ``r`` whose
    leading eigenvalues sum to at least ``energy * trace`` (``trace`` defaults to the
    sum of the stored eigenvalues), still capped by ``rank``. With ``eigengap``, the cut
    then moves to the largest relative gap ``l_k / l_{k+1}`` for ``k`` in
    ``[ceil(r/2), r]`` (``l_{k+1}`` must be stored), so it does not slice through a
    cluster of near-equal eigenvalues whose directions resampling would swap.
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    available = int(eigenvalues.shape[0])
    r = min(rank, available)
    if energy is not None:
        if not 0.0 < energy <= 1.0:
            raise ValueError(f"energy must be in (0, 1], got {energy}")
        total = float(eigenvalues.sum()) if trace is None else float(trace)
        if total > 0.0:
            cumulative = torch.cumsum(_f32(eigenvalues).clamp_min(0), 0)
            reached = torch.nonzero(cumulative >= energy * total * (1 - 1e-6))
            needed = int(reached[0, 0]) + 1 if reached.numel() else available
            r = max(1, min(r, needed))
    return eigengap_rank(eigenvalues, r) if eigengap else r


def eigengap_rank(eigenvalues: torch.Tensor, rank: int) -> int:
    """``argmax_k l_k / l_{k+1}`` over ``k`` in ``[ceil(rank/2), rank]`` with ``l_{k+1}``
    stored (descending eigenvalues, 1-based ``k``); ``rank`` when no gap can be measured."""
    available = int(eigenvalues.shape[0])
    low, high = max(1, (rank + 1) // 2), min(rank, available - 1)
    if high < low:
        return rank
    values = _f32(eigenvalues[low - 1 : high + 1]).clamp_min(0)
    floor = torch.finfo(torch.float32).tiny
    ratios = values[:-1] / values[1:].clamp_min(floor)
    return low + int(torch.argmax(ratios))


#: Eigenvalues at or below this fraction of the largest are rounding noise, not data:
#: ``E[x x^T]`` is accumulated in float32 (eps 1.2e-7), so its eigenvalues carry an error of
#: order ``eps * lambda_1``. Measured on a tiny Llama (width 64) calibrated on one 2-token
#: line: the 62 directions 2 tokens cannot span came out at 0.7-1.6e-8 lambda_1, the two
#: spanned ones at >= 0.13 lambda_1 (docs/faults.md).
SUPPORTED_EIGENVALUE_FLOOR = 1e-6


def supported_rank(eigenvalues: torch.Tensor, tokens: int | None = None,
                   floor: float = SUPPORTED_EIGENVALUE_FLOOR) -> int:
    """How many leading directions of ``C = E[x x^T]`` the calibration tokens determine.

    ``k = #{i : lambda_i > floor * lambda_1}`` over the stored descending eigenvalues (0 when
    ``lambda_1 <= 0``), at most ``tokens`` (``N``; None: unknown): ``C = (1/N) sum_t x_t x_t^T``
    has rank ``<= N``, so the directions past the N-th hold rounding noise.
    """
    if eigenvalues.numel() == 0:
        return 0
    values = eigenvalues.detach().to(torch.float64)
    top = float(values[0])
    k = int((values > floor * top).sum()) if top > 0.0 else 0
    return k if tokens is None else min(k, max(int(tokens), 0))


def cap_to_supported(rank: int, stored: int, width: int, supported: int) -> int:
    """The rank a merge takes from an entry: ``supported`` when it is below ``r = min(rank,
    stored)`` and ``r < width``, else ``rank``. At ``r = width`` the kept columns span the
    whole input space (``S S^T = I``), which no eigenvalue decides: nothing to cap."""
    r = min(rank, stored)
    return supported if supported < r < width else rank


def select_subspace(
    basis: torch.Tensor,
    eigenvalues: torch.Tensor,
    trace: torch.Tensor | float | None = None,
    rank: int = 64,
    energy: float | None = None,
    eigengap: bool = False,
) -> torch.Tensor:
    """First ``select_rank(...)`` columns of ``basis`` (``in x r``), in float32."""
    r = select_rank(eigenvalues, trace, rank=rank, energy=energy, eigengap=eigengap)
    return _f32(basis[:, :r])
