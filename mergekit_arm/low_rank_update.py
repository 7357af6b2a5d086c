"""The fused ARM step: the rotation as a low-rank correction ``d R^T = d + C V^T`` and the
update ``W_cur + eta d_A`` in one matmul, one add and one ``addmm`` (pure tensor math,
float32, device of the inputs; the rotations themselves are in :mod:`mergekit_arm.rotation`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mergekit_arm.rotation import (
    RotationInputs,
    RotationPlanes,
    SpanRotation,
    guide_to_subspace,
    rotate,
)

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _f32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float32 else tensor.to(torch.float32)


class LowRankRotation(NamedTuple):
    """``d R^T = d + (d V) K`` with ``V`` (in x k) the rotation's basis, ``K`` built from ``d V``.

    ``planes``: ``V = [E, F]`` (2m columns), ``K`` from the cosines and sines of
    :class:`RotationPlanes`; ``span``: ``V = U``, ``(d U) (Omega - I)^T``.
    """

    basis: torch.Tensor  # in x k
    planes: RotationPlanes | None
    span: SpanRotation | None

    def coefficients(self, projected: torch.Tensor) -> torch.Tensor:
        """``C`` (out x k) with ``d R^T = d + C V^T``, from ``projected = d V``."""
        if self.planes is not None:
            # [dE (cos-1) - dF sin, dF (cos-1) + dE sin] = P [cos-1, cos-1] + swap(P) [-sin, sin]
            m = self.planes.e.shape[1]
            cm1, sin = self.planes.cos - 1.0, self.planes.sin
            return torch.addcmul(projected * torch.cat([cm1, cm1]), projected.roll(m, dims=1),
                                 torch.cat([-sin, sin]))
        if self.span is None:
            raise ValueError("a LowRankRotation needs planes or a span rotation")
        k = self.span.u.shape[1]
        eye = torch.eye(k, dtype=projected.dtype, device=projected.device)
        return projected @ (self.span.omega - eye).T


def low_rank_rotation(rotation: RotationPlanes | SpanRotation) -> LowRankRotation | None:
    """``rotation`` (:meth:`RotationInputs.rotation`) as a :class:`LowRankRotation`; None for
    ``R = I``."""
    if rotation.is_identity:
        return None
    if isinstance(rotation, RotationPlanes):
        return LowRankRotation(torch.cat([rotation.e, rotation.f], dim=1), rotation, None)
    return LowRankRotation(rotation.u, None, rotation)


class UpdateFactors(NamedTuple):
    """The low-rank part of one ARM step, independent of ``d`` (shared by every weight that
    reads the same statistics entries: q/k/v, gate/up).

    ``d_A = beta d + C' [V, S]^T`` with ``C'`` computed from ``d [V, S]``
    (:func:`apply_update`); ``columns`` is ``[V, S]`` (``S`` only when guided)."""

    columns: torch.Tensor  # in x (k + r) or in x k, contiguous float32
    rotation: LowRankRotation | None
    k: int  # rotation columns first
    v_t_s: torch.Tensor | None  # V^T S (k x r) when rotating and guided
    guided: bool


def update_factors(inputs: RotationInputs, off_subspace: float = 1.0) -> UpdateFactors | None:
    """:class:`UpdateFactors` of :func:`arm_update`; None when the step is the plain one."""
    rotation = low_rank_rotation(inputs.rotation())
    guided = float(off_subspace) != 1.0
    if rotation is None and not guided:
        return None
    s = _f32(inputs.s_cur)
    parts = ([rotation.basis] if rotation is not None else []) + ([s] if guided else [])
    columns = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)).contiguous()
    k = rotation.basis.shape[1] if rotation is not None else 0
    v_t_s = rotation.basis.T @ s if rotation is not None and guided else None
    return UpdateFactors(columns, rotation, k, v_t_s, guided)


def apply_update(
    w_cur: torch.Tensor,
    d: torch.Tensor,
    factors: UpdateFactors | None,
    learning_rate: float,
    off_subspace: float = 1.0,
    overwrite_d: bool = False,
) -> torch.Tensor:
    """``W_cur + eta d_A`` (see :func:`arm_update`); with ``overwrite_d`` the result is
    written into ``d``'s storage (one full-size tensor fewer)."""
    w, d = _f32(w_cur), _f32(d)
    eta, beta = float(learning_rate), float(off_subspace)
    if factors is None:
        return torch.add(w, d, alpha=eta, out=d) if overwrite_d else torch.add(w, d, alpha=eta)
    projected = d @ factors.columns  # d [V, S]
    rotation, k = factors.rotation, factors.k
    coeff = rotation.coefficients(projected[:, :k]) if rotation is not None else None
    if factors.guided:
        inside = projected[:, k:]  # d S, then + C (V^T S): (d R^T) S
        if coeff is not None:
            inside = inside + coeff @ factors.v_t_s
        inside = inside * (1.0 - beta)
        coeff = inside if coeff is None else torch.cat([coeff * beta, inside], dim=1)
    out = torch.add(w, d, alpha=eta * beta, out=d) if overwrite_d else torch.add(w, d, alpha=eta * beta)
    return out.addmm_(coeff, factors.columns.T, alpha=eta)


def step_overflows(learning_rate: float, off_subspace: float = 1.0) -> bool:
    """Whether ``eta`` or ``eta beta`` is beyond float32 (the fused step cannot be used)."""
    eta, beta = float(learning_rate), float(off_subspace)
    return not (abs(eta) <= _FLOAT32_MAX and abs(eta * beta) <= _FLOAT32_MAX)


def arm_update(
    w_cur: torch.Tensor,
    d: torch.Tensor,
    inputs: RotationInputs | None,
    learning_rate: float,
    off_subspace: float = 1.0,
) -> torch.Tensor:
    """One ARM step ``W_cur + eta d_A`` in float32, in two full passes over ``W``.

    With ``d R^T = d + C V^T`` (:class:`LowRankRotation`, ``C`` from ``d V``) and
    ``S = S_cur``, ``d_A = beta d R^T + (1 - beta) (d R^T S) S^T`` is
    ``beta d + [beta C, (1 - beta)(d S + C V^T S)] [V, S]^T``, so
    ``W_new = (W_cur + eta beta d) + eta [..] [V, S]^T``: one matmul ``d [V, S]``, one
    ``add`` and one ``addmm`` (no full-size temporary). Equal to
    ``w_cur + eta * arm_direction(...)`` to float32 rounding.

    Without subspaces (``inputs`` is None: norms, biases, embeddings), and whenever
    ``R = I`` and ``beta = 1``, this is the plain step ``torch.add(W_cur, d, alpha=eta)``,
    exactly. The caller casts back to its dtype.
    """
    w, d = _f32(w_cur), _f32(d)
    eta = float(learning_rate)
    if step_overflows(learning_rate, off_subspace):
        # Factors beyond float32 (the step overflows): computed unfused, so that the result
        # holds Inf/NaN for the caller to report instead of failing to convert the factor.
        direction = d if inputs is None else guide_to_subspace(
            rotate(d, inputs.rotation()), inputs.s_cur, off_subspace)
        return w + eta * direction
    if inputs is None:
        return torch.add(w, d, alpha=eta)
    return apply_update(w, d, update_factors(inputs, off_subspace), learning_rate, off_subspace)
