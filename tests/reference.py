"""An independent, explicit float64 implementation of the ARM step (tests only).

It forms the full ``in x in`` rotation matrix from the formula in ``docs/method.md``
("The step"), with the sine as ``sqrt(1 - c^2)`` where the library measures it as a norm,
unlike the library's low-rank path.
"""

from __future__ import annotations

import torch


def reference_rotation(s_from: torch.Tensor, s_cur: torch.Tensor, gamma: float = 1.0,
                       eps: float = 1e-5) -> torch.Tensor:
    s_from, s_cur = s_from.double(), s_cur.double()
    n = s_from.shape[0]
    m = s_from.T @ s_cur
    p, c, qh = torch.linalg.svd(m, full_matrices=False)
    a, b = s_from @ p, s_cur @ qh.T
    r = torch.eye(n, dtype=torch.float64)
    for i in range(c.shape[0]):
        ci = float(c[i].clamp(-1, 1))
        si = (1 - ci * ci) ** 0.5
        if si <= eps:
            continue
        e = a[:, i]
        f = (b[:, i] - ci * e) / si
        phi = gamma * float(torch.arccos(torch.tensor(ci, dtype=torch.float64)))
        cos, sin = torch.cos(torch.tensor(phi)).item(), torch.sin(torch.tensor(phi)).item()
        r += (cos - 1) * (torch.outer(e, e) + torch.outer(f, f)) + sin * (
            torch.outer(f, e) - torch.outer(e, f)
        )
    return r


def reference_arm_step(w_cur, w_from, targets, weights, s_from, s_cur, eta, gamma=1.0,
                       beta=1.0, normalize=True) -> torch.Tensor:
    """``W_cur + eta * d_A`` with every product written out in float64."""
    d = sum(w * (t.double() - w_from.double()) for w, t in zip(weights, targets))
    if normalize:
        d = d / sum(weights)
    if s_from is None:
        return w_cur.double() + eta * d
    r = reference_rotation(s_from, s_cur, gamma)
    d_r = d @ r.T
    proj = s_cur.double() @ s_cur.double().T
    d_a = d_r @ proj + beta * d_r @ (torch.eye(proj.shape[0], dtype=torch.float64) - proj)
    return w_cur.double() + eta * d_a


def random_subspace(n: int, r: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))
    return q.float()


def nearby_subspace(s: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """A subspace turned from ``s`` by a random perturbation of size ``scale``."""
    noisy = s.double() + scale * torch.randn(s.shape, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(noisy)
    return q.float()
