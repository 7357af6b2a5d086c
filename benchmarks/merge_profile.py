"""Per-tensor profile of the ``arm`` kernel, phase by phase, next to the matrix-product floor.

For every linear weight kind of a model shape (q/k/v/o, gate/up/down, lm_head) each phase
of one ARM step is timed on in-memory float32 tensors (median of ``repeats``), then summed
over the model with each kind's multiplicity:

* ``statistics``: reading one entry of a statistics file (safetensors read + validation)
  and checking the weight's probe, for the two files;
* ``selection``: ``select_subspace`` for the two files;
* ``pairing``: the rotation's factors (the r x r SVD and the in x r products);
* ``displacement``: ``d = W_to - W_from``; ``products``: ``d [V, S]`` and the ``addmm``;
* ``add``: ``W_cur + eta d``; ``check``: the NaN/Inf/overflow reduction.

"shared" counts the statistics, selection and pairing once per statistics entry (q/k/v
and gate/up read one entry, as calibration writes them and the kernel caches them);
"per tensor" counts them for every weight. The floor is ``4 * out * in * k`` flops
(two products with k = 2r rotation columns) at the rate of a 2048^3 float32 matmul
measured in the same run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch


def _median_ms(call, repeats: int) -> float:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def weight_kinds(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int,
                 vocab: int) -> list[tuple[str, tuple[int, int], int, bool]]:
    """``(kind, (out, in), count, owns_its_entry)`` of a Llama-shaped model's linear weights."""
    kv = hidden // heads * kv_heads
    return [
        ("q_proj", (hidden, hidden), layers, True), ("k_proj", (kv, hidden), layers, False),
        ("v_proj", (kv, hidden), layers, False), ("o_proj", (hidden, hidden), layers, True),
        ("gate_proj", (intermediate, hidden), layers, True),
        ("up_proj", (intermediate, hidden), layers, False),
        ("down_proj", (hidden, intermediate), layers, True), ("lm_head", (vocab, hidden), 1, True),
    ]


def profile(kinds, rank: int = 64, r_max: int = 128, repeats: int = 5) -> tuple[list[list[str]], dict]:
    """Rows of the per-kind table and the model totals (ms) of every phase."""
    from mergekit_arm.low_rank_update import apply_update, update_factors
    from mergekit_arm.merge_methods.arm_checks import value_range
    from mergekit_arm.rotation import RotationInputs, combine_displacements, select_subspace
    from mergekit_arm.statistics import (
        ActivationStatistics,
        LayerStatistics,
        StatisticsContent,
        weight_probe,
        write_statistics,
    )

    x = torch.randn(2048, 2048)
    gflops = 2 * 2048**3 / _median_ms(lambda: x @ x, 3) / 1e6
    g = torch.Generator().manual_seed(0)
    rows, totals = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (out, inp), count, owns in kinds:
            a = 0.02 * torch.randn(out, inp, generator=g)
            b = a + 0.002 * torch.randn(out, inp, generator=g)
            r = min(r_max, inp)
            basis_a = torch.linalg.qr(torch.randn(inp, r, generator=g)).Q.contiguous()
            basis_b = torch.linalg.qr(basis_a + 0.3 * torch.randn(inp, r, generator=g) / inp**0.5).Q
            eig = torch.logspace(0, -3, r)
            copies = [f"model.layers.{i}.{kind}.weight" for i in range(repeats + 1)]
            readers = []
            for key, w, basis in (("a", a, basis_a), ("b", b, basis_b.contiguous())):
                content = StatisticsContent(  # one entry per call: every read is a cache miss
                    layers={n: LayerStatistics(basis.clone(), eig.clone(), eig.sum()) for n in copies},
                    probes={n: weight_probe(w) for n in copies},
                    metadata={"calibration_fingerprint": "p", "probe_dtype": "float32"})
                path = write_statistics(Path(tmp) / f"{kind}{key}.st", content)
                readers.append((ActivationStatistics(path), w))
            calls = iter(copies)

            def read(readers=readers, calls=calls):
                entry = next(calls)
                for stats, weight in readers:
                    stats[entry]
                    stats.check_weight(entry, weight, "model")

            def select(basis_a=basis_a, basis_b=basis_b, eig=eig):
                return (select_subspace(basis_a, eig, eig.sum(), rank),
                        select_subspace(basis_b, eig, eig.sum(), rank))

            s_from, s_cur = select()
            factors = update_factors(RotationInputs(s_from, s_cur))
            d = combine_displacements(a, [b])
            k = factors.columns.shape[1] if factors is not None else 0  # 0: R = I (full rank)
            result = torch.empty_like(d)

            def products(d=d, factors=factors, result=result):
                if factors is None:
                    return
                projected = d @ factors.columns
                result.addmm_(factors.rotation.coefficients(projected), factors.columns.T)

            phase = {
                "statistics": _median_ms(read, repeats),
                "selection": _median_ms(select, repeats),
                "pairing": _median_ms(lambda s_from=s_from, s_cur=s_cur: update_factors(RotationInputs(s_from, s_cur)), repeats),
                "displacement": _median_ms(lambda a=a, b=b: combine_displacements(a, [b]), repeats),
                "products": _median_ms(products, repeats),
                "add": _median_ms(lambda b=b, d=d, result=result: torch.add(b, d, alpha=0.5, out=result), repeats),
                "check": _median_ms(lambda result=result: value_range(result), repeats),
                "whole step": _median_ms(
                    lambda a=a, b=b, factors=factors: apply_update(
                        b, combine_displacements(a, [b]), factors, 0.5, overwrite_d=True), repeats),
            }
            floor = 4 * out * inp * k / gflops / 1e6
            for key, value in phase.items():
                shared = key in ("statistics", "selection", "pairing")
                totals.setdefault(key, [0.0, 0.0])
                totals[key][0] += value * count  # per tensor
                totals[key][1] += value * count * (owns if shared else 1)  # shared entries
            totals.setdefault("floor (products)", [0.0, 0.0])
            totals["floor (products)"][0] += floor * count
            totals["floor (products)"][1] += floor * count
            rows.append([kind, f"{out}x{inp}", str(count)] + [f"{phase[p]:.2f}" for p in phase]
                        + [f"{floor:.2f}"])
    totals["gemm GFLOP/s"] = [gflops, gflops]
    return rows, totals


PHASES = ["statistics", "selection", "pairing", "displacement", "products", "add", "check",
          "whole step"]
