"""The spec's invariants of the rotation math (mergekit_arm.rotation), as a table of cases."""

from __future__ import annotations

import pytest
import torch

from mergekit_arm.low_rank_update import arm_update
from mergekit_arm.rotation import (
    RotationInputs,
    combine_displacements,
    guide_to_subspace,
    principal_angles,
    principal_pairing,
    principal_rotation,
    rotate_rows,
    rotation_matrix,
    select_rank,
    select_subspace,
)

from .reference import nearby_subspace, random_subspace, reference_arm_step, reference_rotation

# (out, in, r, perturbation of S_cur relative to S_from)
CASES = [
    pytest.param(6, 8, 2, 0.3, id="small"),
    pytest.param(16, 32, 4, 0.05, id="near"),
    pytest.param(12, 24, 6, 1.0, id="far"),
    pytest.param(10, 20, 20, 0.5, id="full-rank"),
    pytest.param(40, 64, 8, 0.2, id="wide"),
]


def _setup(out, n, r, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_from = random_subspace(n, r, g)
    s_cur = nearby_subspace(s_from, scale, g)
    d = torch.randn(out, n, generator=g)
    w = torch.randn(out, n, generator=g)
    return g, s_from, s_cur, d, w


def _step(w, d, s_from, s_cur, learning_rate, off_subspace=1.0, **rotation):
    """:func:`arm_update` called like :func:`arm_direction` (no subspaces: the plain step)."""
    inputs = None if s_from is None else RotationInputs(s_from, s_cur, **rotation)
    return arm_update(w, d, inputs, learning_rate, off_subspace)


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_low_rank_application_equals_explicit_matrix(out, n, r, scale):
    _, s_from, s_cur, d, _ = _setup(out, n, r, scale)
    planes = principal_rotation(s_from, s_cur)
    explicit = reference_rotation(s_from, s_cur)
    torch.testing.assert_close(rotation_matrix(planes, n).double(), explicit, atol=2e-5, rtol=0)
    torch.testing.assert_close(rotate_rows(d, planes).double(), d.double() @ explicit.T,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_rotation_is_proper_and_maps_principal_vectors(out, n, r, scale):
    _, s_from, s_cur, _, _ = _setup(out, n, r, scale)
    planes = principal_rotation(s_from, s_cur)
    rot = rotation_matrix(planes, n).double()
    torch.testing.assert_close(rot.T @ rot, torch.eye(n, dtype=torch.float64), atol=1e-5, rtol=0)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-4)
    a, b, _ = principal_pairing(s_from, s_cur)
    torch.testing.assert_close(rot @ a.double(), b.double(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_norm_preserved_with_full_off_subspace(out, n, r, scale):
    _, s_from, s_cur, d, _ = _setup(out, n, r, scale)
    rotated = rotate_rows(d, principal_rotation(s_from, s_cur))
    assert torch.linalg.norm(rotated).item() == pytest.approx(torch.linalg.norm(d).item(), rel=1e-5)
    # and row by row: each row is rotated, not rescaled
    torch.testing.assert_close(rotated.norm(dim=1), d.norm(dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_displacement_in_from_subspace_lands_in_cur_subspace(out, n, r, scale):
    g, s_from, s_cur, _, _ = _setup(out, n, r, scale)
    d = torch.randn(out, r, generator=g) @ s_from.T  # rows in span(S_from)
    rotated = rotate_rows(d, principal_rotation(s_from, s_cur))
    outside = rotated - (rotated @ s_cur) @ s_cur.T
    assert outside.norm().item() < 1e-4 * d.norm().item()


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_zero_strength_and_identical_statistics_give_task_arithmetic_exactly(out, n, r, scale):
    _, s_from, s_cur, d, w = _setup(out, n, r, scale)
    expected = _step(w, d, None, None, 0.7)  # the plain step, W_cur + eta d
    torch.testing.assert_close(expected.double(), w.double() + 0.7 * d.double(), atol=1e-6,
                               rtol=1e-6)
    assert torch.equal(_step(w, d, s_from, s_cur, 0.7, rotation_strength=0.0), expected)
    assert torch.equal(_step(w, d, s_cur, s_cur.clone(), 0.7), expected)
    assert torch.equal(_step(w, d, s_from, s_cur, 0.7, rotation_strength=0.0,
                                  pairing="energy", eig_from=torch.ones(r), eig_cur=torch.ones(r)),
                       expected)


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_invariant_to_basis_sign_flips_and_in_span_rotations(out, n, r, scale):
    g, s_from, s_cur, d, w = _setup(out, n, r, scale)
    reference = _step(w, d, s_from, s_cur, 0.5)
    signs = torch.where(torch.rand(r, generator=g) < 0.5, -1.0, 1.0)
    perm = torch.randperm(r, generator=g)
    flipped = _step(w, d, (s_from * signs)[:, perm], s_cur * signs.flip(0), 0.5)
    torch.testing.assert_close(flipped, reference, atol=1e-4, rtol=1e-4)
    # Any orthonormal re-basing of a span (e.g. a mixing within equal eigenvalues).
    q, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=torch.float64))
    mixed = _step(w, d, s_from @ q.float(), s_cur, 0.5)
    torch.testing.assert_close(mixed, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 1.5])
def test_rotation_strength_scales_angles(gamma):
    _, s_from, s_cur, d, _ = _setup(8, 16, 3, 0.4)
    planes = principal_rotation(s_from, s_cur, strength=gamma)
    torch.testing.assert_close(rotation_matrix(planes, 16).double(),
                               reference_rotation(s_from, s_cur, gamma), atol=2e-5, rtol=0)
    half = principal_rotation(s_from, s_cur, strength=gamma / 2)
    twice = rotate_rows(rotate_rows(d, half), half)
    torch.testing.assert_close(twice, rotate_rows(d, planes), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_off_subspace_damping(beta):
    g, s_from, s_cur, d, w = _setup(10, 24, 4, 0.3)
    guided = guide_to_subspace(d, s_cur, beta)
    inside = (d @ s_cur) @ s_cur.T
    torch.testing.assert_close(guided, inside + beta * (d - inside), atol=1e-5, rtol=1e-5)
    got = _step(w, d, s_from, s_cur, 0.3, off_subspace=beta)
    expected = reference_arm_step(w, torch.zeros_like(w), [d], [1.0], s_from, s_cur, 0.3, beta=beta)
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)


def test_combine_displacements_weighted_mean_and_sum():
    g = torch.Generator().manual_seed(3)
    w_from, t1, t2 = (torch.randn(4, 5, generator=g) for _ in range(3))
    mean = combine_displacements(w_from, [t1, t2], [1.0, 3.0], normalize=True)
    torch.testing.assert_close(mean, ((t1 - w_from) + 3 * (t2 - w_from)) / 4)
    total = combine_displacements(w_from, [t1, t2], [1.0, 3.0], normalize=False)
    torch.testing.assert_close(total, (t1 - w_from) + 3 * (t2 - w_from))
    with pytest.raises(ValueError, match="sum to 0"):
        combine_displacements(w_from, [t1, t2], [1.0, -1.0], normalize=True)


def test_select_rank_by_energy_and_cap():
    eig = torch.tensor([5.0, 3.0, 1.0, 0.5, 0.5])
    assert select_rank(eig, rank=64) == 5
    assert select_rank(eig, rank=2) == 2
    assert select_rank(eig, trace=10.0, rank=64, energy=0.5) == 1
    assert select_rank(eig, trace=10.0, rank=64, energy=0.8) == 2
    assert select_rank(eig, trace=10.0, rank=64, energy=0.9) == 3
    assert select_rank(eig, trace=10.0, rank=2, energy=0.95) == 2
    # energy beyond what is stored keeps everything stored
    assert select_rank(eig, trace=100.0, rank=64, energy=0.99) == 5
    basis = torch.eye(5)
    assert select_subspace(basis, eig, 10.0, rank=64, energy=0.8).shape == (5, 2)
    with pytest.raises(ValueError):
        select_rank(eig, rank=0)
    with pytest.raises(ValueError):
        select_rank(eig, rank=3, energy=1.5)


def test_principal_angles_of_known_subspaces():
    n = 6
    s_from = torch.eye(n)[:, :2]
    theta = 0.3
    s_cur = torch.zeros(n, 2)
    s_cur[0, 0] = 1.0
    s_cur[1, 1], s_cur[2, 1] = torch.cos(torch.tensor(theta)), torch.sin(torch.tensor(theta))
    angles = principal_angles(s_from, s_cur)
    torch.testing.assert_close(angles.sort().values, torch.tensor([0.0, theta]), atol=1e-3, rtol=0)
    planes = principal_rotation(s_from, s_cur)
    assert planes.e.shape[1] == 1  # the aligned pair is left alone
    rot = rotation_matrix(planes)  # and the turned one still maps a_1 onto b_1
    torch.testing.assert_close(rot @ rot.T, torch.eye(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(rot @ s_from, s_cur, atol=1e-5, rtol=0)


def test_rank_mismatch_between_from_and_cur_pairs_min_rank():
    g = torch.Generator().manual_seed(5)
    s_from = random_subspace(20, 6, g)
    s_cur = nearby_subspace(s_from[:, :4], 0.2, g)
    planes = principal_rotation(s_from, s_cur)
    assert planes.e.shape[1] <= 4
    rot = rotation_matrix(planes, 20)
    torch.testing.assert_close(rot.T @ rot, torch.eye(20), atol=1e-5, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda_tensors():
    _, s_from, s_cur, d, w = _setup(16, 32, 4, 0.3)
    cpu = _step(w, d, s_from, s_cur, 0.5, off_subspace=0.5)
    gpu = _step(w.cuda(), d.cuda(), s_from.cuda(), s_cur.cuda(), 0.5, off_subspace=0.5)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


# -- energy-weighted (Procrustes) pairing ------------------------------------------------------

from mergekit_arm.rotation import (  # noqa: E402
    arm_direction,
    energy_weighted_rotation,
    rotate_rows_in_span,
)


def _span_matrix(rotation, n):
    eye = torch.eye(n)
    if rotation.is_identity:
        return eye
    k = rotation.u.shape[1]
    return eye + rotation.u @ (rotation.omega - torch.eye(k)) @ rotation.u.T


@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_energy_rotation_is_proper_low_rank_and_norm_preserving(out, n, r, scale):
    g, s_from, s_cur, d, _ = _setup(out, n, r, scale)
    eig_f = torch.linspace(3.0, 0.5, r)
    eig_c = torch.linspace(2.5, 0.4, r)
    rotation = energy_weighted_rotation(s_from, eig_f, s_cur, eig_c)
    rot = _span_matrix(rotation, n).double()
    torch.testing.assert_close(rot.T @ rot, torch.eye(n, dtype=torch.float64), atol=1e-5, rtol=0)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-4)
    low_rank = rotate_rows_in_span(d, rotation)
    torch.testing.assert_close(low_rank.double(), d.double() @ rot.T, atol=1e-4, rtol=1e-4)
    assert low_rank.norm().item() == pytest.approx(d.norm().item(), rel=1e-5)


def test_energy_rotation_solves_procrustes_and_is_identity_for_equal_statistics():
    g, s_from, s_cur, d, w = _setup(8, 20, 4, 0.3)
    eig = torch.tensor([4.0, 2.0, 1.0, 0.5])
    same = energy_weighted_rotation(s_from, eig, s_from.clone(), eig.clone())
    assert same.is_identity
    assert torch.equal(_step(w, d, s_from, s_from.clone(), 0.5, pairing="energy",
                                  eig_from=eig, eig_cur=eig.clone()),
                       _step(w, d, None, None, 0.5))
    rotation = energy_weighted_rotation(s_from, eig, s_cur, eig)
    rot = _span_matrix(rotation, 20).double()
    root_f = s_from.double() @ torch.diag(eig.double().sqrt()) @ s_from.double().T
    root_c = s_cur.double() @ torch.diag(eig.double().sqrt()) @ s_cur.double().T
    fitted = (rot @ root_f - root_c).norm()
    # No other rotation in random trials fits the Procrustes objective better.
    for _ in range(20):
        q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
        if torch.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        assert fitted <= (q @ root_f - root_c).norm() + 1e-6


def test_energy_pairing_ignores_swaps_of_low_energy_directions():
    """A hard top-r cut swapping a near-zero-energy direction reads as a 90 degree turn to
    the subspace pairing; the energy-weighted pairing barely moves."""
    n = 10
    eye = torch.eye(n)
    s_from = eye[:, [0, 1, 2]]
    s_cur = eye[:, [0, 1, 3]]  # third direction swapped
    eig = torch.tensor([5.0, 4.0, 1e-4])
    d = torch.randn(6, n, generator=torch.Generator().manual_seed(0))
    by_subspace = arm_direction(d, s_from, s_cur)
    by_energy = arm_direction(d, s_from, s_cur, pairing="energy", eig_from=eig, eig_cur=eig)
    assert (by_subspace - d).norm() > 0.3 * d.norm()
    assert (by_energy - d).norm() < 0.05 * d.norm()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
def test_energy_rotation_strength_is_a_power(gamma):
    _, s_from, s_cur, d, _ = _setup(8, 16, 3, 0.4)
    eig = torch.tensor([3.0, 2.0, 1.0])
    full = energy_weighted_rotation(s_from, eig, s_cur, eig)
    part = energy_weighted_rotation(s_from, eig, s_cur, eig, strength=gamma)
    if gamma == 0.0:
        assert part.is_identity
        return
    twice = rotate_rows_in_span(rotate_rows_in_span(d, part), part)
    once = rotate_rows_in_span(d, energy_weighted_rotation(s_from, eig, s_cur, eig, 2 * gamma))
    torch.testing.assert_close(twice, once, atol=1e-4, rtol=1e-4)
    assert full.u.shape == part.u.shape


# -- the fused step (arm_update) against the step-by-step composition -------------------------

STEP_VARIANTS = [
    pytest.param({}, id="default"),
    pytest.param({"rotation_strength": 0.5}, id="half-rotation"),
    pytest.param({"rotation_strength": 0.0, "off_subspace": 0.4}, id="guidance-only"),
    pytest.param({"off_subspace": 0.0}, id="in-subspace-only"),
    pytest.param({"off_subspace": 0.3, "rotation_strength": 1.5}, id="guided"),
    pytest.param({"pairing": "energy"}, id="energy"),
    pytest.param({"pairing": "energy", "off_subspace": 0.3, "rotation_strength": 0.5},
                 id="energy-guided"),
]


def _eigs(r):
    return {"eig_from": torch.linspace(3.0, 0.5, r), "eig_cur": torch.linspace(2.5, 0.4, r)}


@pytest.mark.parametrize("variant", STEP_VARIANTS)
@pytest.mark.parametrize(("out", "n", "r", "scale"), CASES)
def test_fused_step_equals_composition(out, n, r, scale, variant):
    """``arm_update`` (one matmul, one add, one addmm) equals ``W + eta * arm_direction``
    (rotate, then guide, then step) and, for the subspace pairing, the float64 reference."""
    _, s_from, s_cur, d, w = _setup(out, n, r, scale)
    kwargs = {**variant, **(_eigs(r) if variant.get("pairing") == "energy" else {})}
    fused = _step(w, d, s_from, s_cur, 0.6, **kwargs)
    composed = w + 0.6 * arm_direction(d, s_from, s_cur, **kwargs)
    torch.testing.assert_close(fused, composed, atol=2e-6, rtol=1e-5)
    if variant.get("pairing") != "energy":
        expected = reference_arm_step(w, torch.zeros_like(w), [d], [1.0], s_from, s_cur, 0.6,
                                      gamma=variant.get("rotation_strength", 1.0),
                                      beta=variant.get("off_subspace", 1.0))
        torch.testing.assert_close(fused.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", [v for v in STEP_VARIANTS
                                     if v.values[0].get("off_subspace", 1.0) != 0.0])
@pytest.mark.parametrize("bad", ["cur", "from", "target", "zero-weight-target"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nonfinite_input_always_reaches_the_step(variant, bad, value):
    """Why the kernel checks only its result: a NaN/Inf in W_cur, W_from or any target
    (weight 0 included: 0 * Inf = NaN) makes ``W_cur + eta d_A`` non-finite whenever the
    float32 factor ``eta * off_subspace`` is nonzero (where it is 0, the kernel checks its
    inputs directly: tests/test_merge_kernel.py)."""
    r = 4
    g, s_from, s_cur, _, w_cur = _setup(10, 20, r, 0.3)
    w_from = torch.randn(10, 20, generator=g)
    targets = [torch.randn(10, 20, generator=g) for _ in range(2)]
    where = {"cur": w_cur, "from": w_from, "target": targets[0], "zero-weight-target": targets[1]}
    where[bad][2, 7] = value
    d = combine_displacements(w_from, targets, [1.0, 0.0])
    kwargs = {**variant, **(_eigs(r) if variant.get("pairing") == "energy" else {})}
    result = _step(w_cur, d, s_from, s_cur, 0.5, **kwargs)
    assert not bool(torch.isfinite(result).all())
