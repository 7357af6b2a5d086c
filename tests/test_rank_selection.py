"""How many principal directions a merge uses: fixed rank, energy cut, eigengap cut."""

from __future__ import annotations

import pytest
import torch
from mergekit.merge_methods import merge_tensors

import mergekit_arm
from mergekit_arm.rotation import eigengap_rank, select_rank, select_subspace
from mergekit_arm.statistics import (
    LayerStatistics,
    StatisticsContent,
    weight_probe,
    write_statistics,
)

from .reference import random_subspace, reference_arm_step

# Eigenvalues with a cluster of four near-equal values at positions 5-8 (1-based):
# a rank-6 cut slices through the cluster, the gap after position 8 is the natural cut.
CLUSTERED = torch.tensor([40.0, 20.0, 10.0, 8.0, 3.0, 2.99, 2.98, 2.97, 0.5, 0.4, 0.3, 0.2])

CASES = [
    # (eigenvalues, rank, energy, expected r)
    pytest.param(CLUSTERED, 8, None, 8, id="gap-at-the-requested-rank"),
    pytest.param(CLUSTERED, 12, None, 8, id="gap-inside-the-window"),
    pytest.param(CLUSTERED, 6, None, 4, id="cut-through-cluster-moves-before-it"),
    pytest.param(CLUSTERED, 2, None, 1, id="small-rank"),
    pytest.param(CLUSTERED, 1, None, 1, id="rank-one"),
    pytest.param(CLUSTERED, 12, 0.70, 2, id="energy-then-gap"),  # energy: r=3; l2/l3 > l3/l4
]


@pytest.mark.parametrize(("eigenvalues", "rank", "energy", "expected"), CASES)
def test_eigengap_rank_picks_the_largest_relative_gap(eigenvalues, rank, energy, expected):
    r = select_rank(eigenvalues, eigenvalues.sum(), rank=rank, energy=energy, eigengap=True)
    assert r == expected
    # and it never exceeds what rank/energy alone allow, nor goes below half of it
    plain = select_rank(eigenvalues, eigenvalues.sum(), rank=rank, energy=energy)
    assert (plain + 1) // 2 <= r <= plain


def test_eigengap_rank_is_the_argmax_of_consecutive_ratios():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        values = torch.rand(30, generator=g).sort(descending=True).values + 1e-3
        rank = int(torch.randint(2, 30, (1,), generator=g))
        low, high = (rank + 1) // 2, min(rank, 29)
        ratios = {k: float(values[k - 1] / values[k]) for k in range(low, high + 1)}
        assert eigengap_rank(values, rank) == max(ratios, key=ratios.get)


def test_eigengap_never_cuts_after_the_last_stored_eigenvalue():
    # rank 3 = all stored: l_3/l_4 cannot be measured, so k = 3 is not a candidate
    # and the window is [2, 2] ...
    assert eigengap_rank(torch.tensor([5.0, 4.0, 3.0]), 3) == 2
    # ... while with l_4 stored, the large gap l_3/l_4 wins
    assert eigengap_rank(torch.tensor([5.0, 4.0, 3.0, 0.1]), 3) == 3


def test_eigengap_falls_back_to_rank_when_no_gap_can_be_measured():
    # a window [ceil(rank/2), min(rank, available - 1)] that is empty returns rank itself
    assert eigengap_rank(torch.tensor([5.0]), 1) == 1
    assert eigengap_rank(torch.tensor([5.0, 4.0]), 4) == 4  # window [2, 1]: empty
    assert select_rank(torch.tensor([5.0]), rank=8, eigengap=True) == 1


def test_select_subspace_with_eigengap_keeps_leading_columns():
    g = torch.Generator().manual_seed(0)
    basis = random_subspace(16, 12, g)
    out = select_subspace(basis, CLUSTERED, CLUSTERED.sum(), rank=6, eigengap=True)
    assert torch.equal(out, basis[:, :4])


def test_kernel_eigengap_equals_the_explicit_rank(tmp_path):
    """`eigengap: true` with rank 6 on clustered spectra = `rank: 4` without it."""
    mergekit_arm.register()
    name = "model.layers.0.mlp.down_proj.weight"
    g = torch.Generator().manual_seed(1)
    origin = torch.randn(10, 16, generator=g)
    ckpt = origin + 0.1 * torch.randn(10, 16, generator=g)
    s_from, s_cur = random_subspace(16, 12, g), random_subspace(16, 12, g)

    def stats(path, weight, basis):
        content = StatisticsContent(
            layers={name: LayerStatistics(basis, CLUSTERED.clone(), CLUSTERED.sum())},
            probes={name: weight_probe(weight)},
            metadata={"calibration_fingerprint": "same", "model": str(path),
                      "probe_dtype": "float32"})
        return str(write_statistics(path, content))

    params = {"learning_rate": 0.7, "origin": {"o": True, "c": False},
              "activations": {"o": stats(tmp_path / "o.st", origin, s_from),
                              "c": stats(tmp_path / "c.st", ckpt, s_cur)}}

    def merge(extra):
        return merge_tensors([origin, ckpt], "arm", ids=["o", "c"], base_index=1, name=name,
                             parameters=params | extra)

    with_gap = merge({"rank": 6, "eigengap": True})
    explicit = merge({"rank": 4})
    without = merge({"rank": 6})
    torch.testing.assert_close(with_gap, explicit, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(with_gap, without, atol=1e-4)
    expected = reference_arm_step(ckpt, origin, [ckpt], [1.0], s_from[:, :4], s_cur[:, :4], 0.7)
    torch.testing.assert_close(with_gap, expected.to(torch.float32), rtol=1e-4, atol=1e-5)
