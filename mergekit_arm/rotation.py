"""The ARM step as pure tensor math: no I/O, no mergekit, float32, device of the inputs.

Notation (one 2-D weight ``W`` of shape ``out x in`` acting on inputs ``x``):

* ``d``: the displacement to apply, ``sum_j w_j (W_to_j - W_from) / sum_j w_j``.
* ``S_from``, ``S_cur``: orthonormal bases (``in x r``) of the principal subspaces
  of ``E[x x^T]`` for this weight's input, measured on the ``from`` model and on
  the current model.
* Principal-vector pairing: ``S_from^T S_cur = P diag(c) Q^T``, ``A = S_from P``,
  ``B = S_cur Q``, angles ``phi_i = arccos(c_i)``.
* Direct rotation ``R``: in each plane ``(e_i, f_i)`` with ``e_i = a_i`` and
  ``f_i = (b_i - c_i a_i) / sin(phi_i)`` turn by ``gamma * phi_i``; identity off
  ``span(A, B)``. Applied to the rows of ``d`` as ``d R^T`` in low rank.
* Guidance: ``d_A = d_R S S^T + beta d_R (I - S S^T)`` with ``S = S_cur``.
* Step: ``W_new = W_cur + eta d_A``.

This is the project's reconstruction of ARM (the paper's equations are not
public); see ``docs/method.md``. Which leading directions ``S`` keeps (rank, energy,
eigengap, the rank the tokens support) is :mod:`mergekit_arm.subspace_selection`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mergekit_arm.subspace_selection import (  # noqa: F401 (re-exported: their old home)
    SUPPORTED_EIGENVALUE_FLOOR,
    cap_to_supported,
    eigengap_rank,
    select_rank,
    select_subspace,
    supported_rank,
)

# Pairs whose sine is below this are treated as already aligned (no turn).
DEFAULT_EPS = 1e-5


def _f32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float32 else tensor.to(torch.float32)


class PrincipalPairing(NamedTuple):
    """Principal vectors of two subspaces: ``a_i = A[:, i]`` pairs with ``b_i``."""

    a: torch.Tensor  # in x k, orthonormal, in span(S_from)
    b: torch.Tensor  # in x k, orthonormal, in span(S_cur)
    cos: torch.Tensor  # k, descending cosines c_i = a_i . b_i in [0, 1]


def principal_pairing(s_from: torch.Tensor, s_cur: torch.Tensor) -> PrincipalPairing:
    """SVD pairing ``S_from^T S_cur = P diag(c) Q^T``; ``A = S_from P``, ``B = S_cur Q``."""
    s_from, s_cur = _f32(s_from), _f32(s_cur)
    if s_from.shape[0] != s_cur.shape[0]:
        raise ValueError(
            f"subspaces live in different spaces: {tuple(s_from.shape)} vs {tuple(s_cur.shape)}"
        )
    overlap = s_from.T @ s_cur
    p, c, qh = torch.linalg.svd(overlap, full_matrices=False)
    return PrincipalPairing(a=s_from @ p, b=s_cur @ qh.T, cos=c.clamp(0.0, 1.0))


def principal_angles(s_from: torch.Tensor, s_cur: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between ``span(S_from)`` and ``span(S_cur)``."""
    c = torch.linalg.svdvals(_f32(s_from).T @ _f32(s_cur)).clamp(0.0, 1.0)
    return torch.arccos(c)


class RotationPlanes(NamedTuple):
    """A rotation ``R = I + sum_i [(cos t_i - 1)(e e^T + f f^T) + sin t_i (f e^T - e f^T)]``."""

    e: torch.Tensor  # in x m, orthonormal
    f: torch.Tensor  # in x m, orthonormal, orthogonal to e
    cos: torch.Tensor  # m, cos of the turn in each plane
    sin: torch.Tensor  # m, sin of the turn in each plane

    @property
    def is_identity(self) -> bool:
        return self.e.shape[1] == 0


def _identity_planes(like: torch.Tensor) -> RotationPlanes:
    empty = like.new_zeros((like.shape[0], 0), dtype=torch.float32)
    return RotationPlanes(empty, empty, empty.new_zeros(0), empty.new_zeros(0))


def principal_rotation(
    s_from: torch.Tensor,
    s_cur: torch.Tensor,
    strength: float = 1.0,
    eps: float = DEFAULT_EPS,
) -> RotationPlanes:
    """Direct rotation that turns ``span(S_from)`` onto ``span(S_cur)``, scaled by ``strength``.

    With ``strength = 1`` it maps each principal vector ``a_i`` to ``b_i``; with
    ``strength = gamma`` every plane turns by ``gamma * phi_i``; ``0`` is the identity.
    The sine of each pair is measured as ``|b_i - c_i a_i|`` (stable near 0 and 90 deg);
    pairs with sine ``<= eps`` are left alone.
    """
    if strength == 0.0 or s_from is s_cur or (
        s_from.shape == s_cur.shape and torch.equal(s_from, s_cur)
    ):
        return _identity_planes(s_from)
    a, b, c = principal_pairing(s_from, s_cur)
    residual = b.addcmul_(a, c, value=-1.0)  # b - c a, in b's storage (b is not used again)
    s = torch.linalg.vector_norm(residual, dim=0)
    keep = s > eps
    kept = int(keep.sum())
    if kept == 0:
        return _identity_planes(s_from)
    if kept < keep.numel():  # index only when some pair is already aligned
        a, residual, s, c = a[:, keep], residual[:, keep], s[keep], c[keep]
    phi = torch.atan2(s, c)
    if strength != 1.0:
        phi.mul_(float(strength))
    return RotationPlanes(e=a, f=residual.div_(s), cos=torch.cos(phi), sin=torch.sin(phi))


def rotate_rows(d: torch.Tensor, planes: RotationPlanes) -> torch.Tensor:
    """``d R^T`` (each row of ``d`` rotated by ``R``) in O(out * in * m), never forming R.

    ``d R^T = d + (dE) diag(cos-1) E^T + (dF) diag(cos-1) F^T + (dE) diag(sin) F^T
    - (dF) diag(sin) E^T``.
    """
    d = _f32(d)
    if planes.is_identity:
        return d
    e, f = planes.e, planes.f
    de, df = d @ e, d @ f
    cm1 = planes.cos - 1.0
    coeff_e = de * cm1 - df * planes.sin
    coeff_f = df * cm1 + de * planes.sin
    return d + coeff_e @ e.T + coeff_f @ f.T


def rotation_matrix(planes: RotationPlanes, dim: int | None = None) -> torch.Tensor:
    """The explicit ``in x in`` matrix ``R`` (for tests and small diagnostics only)."""
    n = planes.e.shape[0] if dim is None else dim
    eye = torch.eye(n, dtype=torch.float32, device=planes.e.device)
    if planes.is_identity:
        return eye
    e, f = planes.e, planes.f
    cm1 = planes.cos - 1.0
    return (
        eye
        + (e * cm1) @ e.T
        + (f * cm1) @ f.T
        + (f * planes.sin) @ e.T
        - (e * planes.sin) @ f.T
    )


class SpanRotation(NamedTuple):
    """A rotation ``R = I + U (Omega - I) U^T``: ``Omega`` (k x k, proper orthogonal) acts
    on ``span(U)`` (``U``: in x k, orthonormal) and ``R`` is the identity elsewhere."""

    u: torch.Tensor
    omega: torch.Tensor

    @property
    def is_identity(self) -> bool:
        return self.u.shape[1] == 0


def _union_basis(s_from: torch.Tensor, s_cur: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """Orthonormal basis of ``span(S_from) + span(S_cur)``."""
    stacked = torch.cat([s_from, s_cur], dim=1)
    u, sv, _ = torch.linalg.svd(stacked, full_matrices=False)
    keep = sv > tol * sv[0].clamp_min(1e-30)
    return u[:, keep]


def _orthogonal_power(omega: torch.Tensor, strength: float) -> torch.Tensor:
    """``Omega^gamma`` for a proper orthogonal matrix (same rotation planes, angles * gamma)."""
    if strength == 1.0:
        return omega
    values, vectors = torch.linalg.eig(omega.to(torch.float64))
    powered = vectors @ torch.diag(values ** strength) @ torch.linalg.inv(vectors)
    return powered.real.to(omega.dtype)


def energy_weighted_rotation(
    s_from: torch.Tensor,
    eig_from: torch.Tensor,
    s_cur: torch.Tensor,
    eig_cur: torch.Tensor,
    strength: float = 1.0,
) -> SpanRotation:
    """Orthogonal Procrustes between the square roots of the two second moments.

    On ``U = orth([S_from, S_cur])`` let ``X = U^T S_f diag(sqrt l_f) S_f^T U`` and
    ``Y`` likewise for ``cur``; ``Omega = argmin ||Omega X - Y||_F`` over proper rotations
    (Kabsch: ``Y X^T = P Sigma Q^T``, ``Omega = P diag(1, .., det(P Q^T)) Q^T``). A
    direction is weighted by its activation energy, so near-degenerate directions that a
    hard top-r cut swaps in and out barely turn the update. ``strength`` scales the angles.
    """
    s_from, s_cur = _f32(s_from), _f32(s_cur)
    r_f, r_c = s_from.shape[1], s_cur.shape[1]
    root_f = _f32(eig_from[:r_f]).clamp_min(0).sqrt()
    root_c = _f32(eig_cur[:r_c]).clamp_min(0).sqrt()
    if strength == 0.0 or (s_from.shape == s_cur.shape and torch.equal(s_from, s_cur)
                           and torch.equal(root_f, root_c)):
        empty = s_from.new_zeros((s_from.shape[0], 0))
        return SpanRotation(empty, empty.new_zeros((0, 0)))
    u = _union_basis(s_from, s_cur)
    a_f, a_c = u.T @ s_from, u.T @ s_cur
    x = (a_f * root_f) @ a_f.T
    y = (a_c * root_c) @ a_c.T
    p, _, qh = torch.linalg.svd((y @ x.T).to(torch.float64))
    sign = torch.sign(torch.linalg.det(p @ qh))
    fix = torch.ones(p.shape[1], dtype=torch.float64, device=p.device)
    fix[-1] = sign if sign != 0 else 1.0
    omega = ((p * fix) @ qh).to(torch.float32)
    return SpanRotation(u, _orthogonal_power(omega, float(strength)))


def rotate_rows_in_span(d: torch.Tensor, rotation: SpanRotation) -> torch.Tensor:
    """``d R^T = d + (d U)(Omega - I)^T U^T`` in O(out * in * k)."""
    d = _f32(d)
    if rotation.is_identity:
        return d
    u = rotation.u
    eye = torch.eye(u.shape[1], dtype=torch.float32, device=u.device)
    return d + ((d @ u) @ (rotation.omega - eye).T) @ u.T


def guide_to_subspace(d: torch.Tensor, s_cur: torch.Tensor, off_subspace: float = 1.0) -> torch.Tensor:
    """``d S S^T + beta d (I - S S^T)`` = ``beta d + (1 - beta) (d S) S^T``; beta=1 is a no-op."""
    d = _f32(d)
    if off_subspace == 1.0:
        return d
    s = _f32(s_cur)
    inside = (d @ s) @ s.T
    return off_subspace * d + (1.0 - off_subspace) * inside


def combine_displacements(
    w_from: torch.Tensor,
    targets: list[torch.Tensor],
    weights: list[float] | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """``d = sum_j c_j (W_to_j - W_from)`` with ``c_j = w_j / sum_k w_k`` (``normalize``) or ``w_j``.

    One pass for a single target of coefficient 1 (``d = W_to - W_from``). Every target
    enters through a real subtraction and, for ``c_j != 1``, a real multiplication (also
    for ``c_j = 0``), so a NaN/Inf in any input reaches ``d`` (``0 * Inf = NaN``).
    """
    if not targets:
        raise ValueError("at least one target is needed to form a displacement")
    weights = [1.0] * len(targets) if weights is None else [float(w) for w in weights]
    if len(weights) != len(targets):
        raise ValueError(f"{len(weights)} weights for {len(targets)} targets")
    if normalize:
        total = float(sum(weights))
        if total == 0.0 or not math.isfinite(total):
            raise ValueError(f"weights sum to {total}; cannot normalize (set normalize: false)")
        coefficients = [w / total for w in weights]
    else:
        coefficients = weights
    base = _f32(w_from)
    d = torch.sub(_f32(targets[0]), base)
    if coefficients[0] != 1.0:
        d.mul_(coefficients[0])
    for coefficient, target in zip(coefficients[1:], targets[1:]):
        term = torch.sub(_f32(target), base)
        if coefficient != 1.0:
            term.mul_(coefficient)
        d.add_(term)
    return d


PAIRINGS = ("subspace", "energy")


class RotationInputs(NamedTuple):
    """The two subspaces of one weight's step (``in x k``) and how ``R`` pairs them:
    ``pairing="subspace"``, the direct rotation between principal vectors (the spec);
    ``"energy"``, :func:`energy_weighted_rotation` (needs both eigenvalue vectors)."""

    s_from: torch.Tensor
    s_cur: torch.Tensor
    rotation_strength: float = 1.0
    eps: float = DEFAULT_EPS
    pairing: str = "subspace"
    eig_from: torch.Tensor | None = None
    eig_cur: torch.Tensor | None = None

    def rotation(self) -> RotationPlanes | SpanRotation:
        """``R`` from ``S_from`` toward ``S_cur`` at ``rotation_strength``."""
        if self.pairing == "subspace":
            return principal_rotation(self.s_from, self.s_cur, strength=self.rotation_strength,
                                      eps=self.eps)
        if self.pairing == "energy":
            if self.eig_from is None or self.eig_cur is None:
                raise ValueError("pairing='energy' needs the eigenvalues of both subspaces")
            return energy_weighted_rotation(self.s_from, self.eig_from, self.s_cur, self.eig_cur,
                                            self.rotation_strength)
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")


def rotate(d: torch.Tensor, rotation: RotationPlanes | SpanRotation) -> torch.Tensor:
    """``d R^T`` for either kind of rotation."""
    if isinstance(rotation, RotationPlanes):
        return rotate_rows(d, rotation)
    return rotate_rows_in_span(d, rotation)


def arm_direction(
    d: torch.Tensor,
    s_from: torch.Tensor,
    s_cur: torch.Tensor,
    rotation_strength: float = 1.0,
    off_subspace: float = 1.0,
    eps: float = DEFAULT_EPS,
    pairing: str = "subspace",
    eig_from: torch.Tensor | None = None,
    eig_cur: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotated and guided displacement ``d_A`` (rows of ``d`` act on the ``in`` axis), ``R``
    as in :class:`RotationInputs`."""
    inputs = RotationInputs(s_from, s_cur, rotation_strength, eps, pairing, eig_from, eig_cur)
    return guide_to_subspace(rotate(d, inputs.rotation()), s_cur, off_subspace)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine between two tensors flattened (diagnostic: displacement vs later update)."""
    x, y = _f32(x).flatten(), _f32(y).flatten()
    denom = float(torch.linalg.vector_norm(x) * torch.linalg.vector_norm(y))
    return float(x @ y) / denom if denom > 0 else 0.0
