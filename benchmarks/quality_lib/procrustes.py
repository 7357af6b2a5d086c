"""Experimental input-side map (benchmark only, not part of the ARM kernel): an
energy-weighted orthogonal Procrustes pairing.

For one linear input with stored top-r statistics ``C_from ~ U_f diag(l_f) U_f^T`` and
``C_cur ~ U_c diag(l_c) U_c^T``, let ``Q`` be an orthonormal basis of
``span(U_f) + span(U_c)``. In that basis take the square roots
``A = Q^T U_f diag(sqrt l_f) U_f^T Q`` and ``B = Q^T U_c diag(sqrt l_c) U_c^T Q`` and the
rotation ``R = argmin_{R orthogonal} ||R A - B||_F = W V^T`` (``B A^T = W S V^T``).
Rows of a displacement are mapped by ``Q R Q^T`` on the union span and left alone off
it. A direction's weight is its activation energy, so near-degenerate directions at the
cut no longer produce spurious 90 degree turns. Used here only as a diagnostic (the
cosine with the update SFT made later); see docs/quality.md.
"""

from __future__ import annotations

import torch

from . import merges


def procrustes_map(u_f: torch.Tensor, l_f: torch.Tensor, u_c: torch.Tensor,
                   l_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q, R)`` of the energy-weighted Procrustes map on the union of the two spans."""
    both = torch.cat([u_f, u_c], dim=1)
    left, sv, _ = torch.linalg.svd(both, full_matrices=False)
    q = left[:, sv > 1e-4 * sv[0]]
    a = ((q.T @ u_f) * l_f.clamp_min(0).sqrt()) @ (u_f.T @ q)
    b = ((q.T @ u_c) * l_c.clamp_min(0).sqrt()) @ (u_c.T @ q)
    # A small isotropic term makes R unique where both square roots vanish (and R = I
    # when the two statistics agree).
    eps = 1e-3 * float(torch.cat([l_f, l_c]).clamp_min(0).sqrt().max())
    eye = torch.eye(q.shape[1], dtype=q.dtype)
    w, _, vh = torch.linalg.svd((b + eps * eye) @ (a + eps * eye).T)
    return q, w @ vh


def apply_rows(d: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Rows ``x`` of ``d`` mapped to ``Q R Q^T x + (I - Q Q^T) x``."""
    dq = d @ q
    return d + (dq @ r.T - dq) @ q.T


def procrustes_cosines(d: dict, future: dict, from_stats, cur_stats, rank: int) -> dict:
    """Cosine of the Procrustes-mapped displacement with the later SFT update."""
    try:
        fs, cs = merges._layers(from_stats), merges._layers(cur_stats)

        def fn(dd: torch.Tensor, name: str) -> torch.Tensor:
            lf, lc = fs[name], cs[name]
            r = min(rank, lf.basis.shape[1], lc.basis.shape[1])
            q, rot = procrustes_map(lf.basis[:, :r].float(), lf.eigenvalues[:r].float(),
                                    lc.basis[:, :r].float(), lc.eigenvalues[:r].float())
            return apply_rows(dd, q, rot)

        res = merges.direction_cosines(d, future, from_stats, cur_stats, rank,
                                       extra_maps={"procrustes": fn})
        return {"origin->c20 vs c100-c20 (energy-weighted Procrustes)": res}
    except Exception as error:  # a diagnostic must never stop the benchmark
        return {"procrustes failed": {"unrotated": float("nan"), "rotated": float("nan"),
                                      "error": str(error)}}
