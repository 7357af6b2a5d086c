"""Accuracy of float32 ``eigh`` against float64 on real second moments, and its speed.

``principal_subspace`` (mergekit_arm/calibration/eigen.py) eigendecomposes every ``E[x x^T]`` in
float32 and redoes it in float64 when the top-r eigenvalues spread by more than
``FLOAT32_EIGH_MAX_SPREAD`` (``lambda_1 / lambda_r``). This script measures why:

1. It runs a local causal LM (``--model``, e.g. SmolLM2-135M-Instruct) over the shipped
   calibration corpus and accumulates, in float32, ``sum x x^T`` of a few linear inputs,
   over all tokens and over each half of the batches.
2. For each matrix, and with its two largest-variance input features scaled by ``k``
   (``x_j -> k x_j``, i.e. ``C -> D C D``: the "massive activations" of larger LLMs, which
   stretch the spectrum), it compares to the float64 ``eigh`` of the same float32 matrix:

   * float32 ``eigh``: largest relative error of the top-r eigenvalues, largest principal
     angle between the top-r subspaces, and how far ARM would turn a random displacement
     because of that difference (``|d R^T - d| / |d|``, R the kernel's rotation between
     the two bases; 0 means the kernel sees no turn);
   * the float32 accumulation itself (the same sum in another order, two halves added):
     the error already in the matrix that float64 ``eigh`` cannot remove;
   * calibration noise: the same turn between the subspaces of the two halves of the data.

3. Time of float32 and float64 ``eigh`` per input width.
4. The top-r solver against the full ``eigh``, side by side on the same matrices (the
   model's, when ``--model`` is given, and synthetic second moments of 2,048 tokens with
   power-law spectra, with and without massive-activation outliers): largest relative
   error of the top-r eigenvalues and largest principal angle of the top-r subspace, both
   against float64 ``eigh``, and the time of ``principal_subspace`` with
   ``solver="eigh"`` (full ``eigh``, float64 redo above the spread threshold) and with
   ``solver="auto"`` (block subspace iteration where it pays), next to ``torch.lobpcg``.

    python benchmarks/bench_eigh.py --model PATH [--threads 1]
    python benchmarks/bench_eigh.py --solver-only --threads 1   # section 4, synthetic only
    python benchmarks/bench_eigh.py --quick        # random tiny model, smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from bench_common import table

INPUTS = {  # module suffix -> label
    "self_attn.q_proj": "attention input",
    "self_attn.o_proj": "o_proj input",
    "mlp.gate_proj": "MLP input",
    "mlp.down_proj": "down_proj input",
}


def collect(model, token_lists, pad_id: int, names: list[str], batch_size: int):
    """float32 ``sum x x^T`` of each named module's input: all batches, and per half."""
    from mergekit_arm.calibration import iter_batches

    full: dict[str, torch.Tensor] = {}
    halves: dict[str, list[torch.Tensor]] = {}
    counts: dict[str, list[int]] = {}
    state: dict = {}
    batches = list(iter_batches(token_lists, batch_size, pad_id))

    def hook(name):
        def record(module, args):
            x = args[0].detach()[state["mask"]].float()
            if name not in full:
                n = x.shape[-1]
                full[name] = torch.zeros(n, n)
                halves[name] = [torch.zeros(n, n), torch.zeros(n, n)]
                counts[name] = [0, 0]
            full[name].addmm_(x.T, x)
            halves[name][state["half"]].addmm_(x.T, x)
            counts[name][state["half"]] += x.shape[0]
        return record

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            for index, (ids, mask) in enumerate(batches):
                state["half"] = 0 if index < len(batches) // 2 else 1
                state["mask"] = mask.bool()
                model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return full, halves, counts


def top(c: torch.Tensor, dtype: torch.dtype, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    e, v = torch.linalg.eigh(c.to(dtype))
    return e.flip(0)[:r].double(), v.flip(1)[:, :r].double()


def max_angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle between two orthonormal bases, in float64 (via sines)."""
    sines = torch.linalg.svdvals(b - a @ (a.T @ b))
    return math.degrees(math.asin(min(1.0, float(sines.max()))))


def turn(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> float:
    """``|d R^T - d| / |d|`` for a random ``d``, R the ARM rotation from span(a) to span(b)."""
    from mergekit_arm.rotation import principal_rotation, rotate_rows

    d = torch.randn(256, a.shape[0], generator=generator)
    rotated = rotate_rows(d, principal_rotation(a.float(), b.float()))
    return float((rotated - d).norm() / d.norm())


def accuracy(full, halves, counts, rank: int, scales: list[float]) -> None:
    from mergekit_arm.calibration.eigen import FLOAT32_EIGH_MAX_SPREAD

    g = torch.Generator().manual_seed(0)
    rows = []
    for name, total in full.items():
        n = total.shape[0]
        r = min(rank, n - 1)
        count = sum(counts[name])
        idx = torch.diagonal(total).topk(2).indices
        for k in scales:
            scale = torch.ones(n)
            scale[idx] = k
            outer = scale[:, None] * scale[None, :]
            c = total / count * outer
            other_order = (halves[name][0] + halves[name][1]) / count * outer
            e64, v64 = top(c, torch.float64, r)
            e32, v32 = top(c, torch.float32, r)
            e_order, v_order = top(other_order, torch.float64, r)
            h0 = top(halves[name][0] / counts[name][0] * outer, torch.float64, r)[1]
            h1 = top(halves[name][1] / counts[name][1] * outer, torch.float64, r)[1]
            spread = float(e64[0] / e64[r - 1])
            rows.append([
                name.replace("model.layers.", "L"), f"{k:g}", f"{spread:.1e}",
                "float32" if spread <= FLOAT32_EIGH_MAX_SPREAD else "float64",
                f"{float(((e32 - e64).abs() / e64).max()):.1e}", f"{max_angle_deg(v64, v32):.3f}",
                f"{turn(v64, v32, g):.1e}",
                f"{float(((e_order - e64).abs() / e64).max()):.1e}",
                f"{max_angle_deg(v64, v_order):.3f}", f"{turn(h0, h1, g):.2f}",
            ])
    print(table(rows, ["input", "outlier x", "l1/l_r", "chosen", "f32: eig err", "f32: max deg",
                       "f32: turn", "sum order: eig err", "sum order: max deg",
                       "halves: turn"]))
    print(f"(r = {rank}; chosen = what principal_subspace uses at this spread, threshold "
          f"{FLOAT32_EIGH_MAX_SPREAD:g}; 'turn' = |d R^T - d| / |d|)\n")


def speed(widths: list[int], repeats: int) -> None:
    rows = []
    for n in widths:
        x = torch.randn(4 * n, n)
        c = x.T @ x / x.shape[0]
        times = {}
        for dtype in (torch.float32, torch.float64):
            m = c.to(dtype)
            torch.linalg.eigh(m)
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                torch.linalg.eigh(m)
                samples.append(time.perf_counter() - start)
            times[dtype] = statistics.median(samples)
        rows.append([str(n), f"{times[torch.float32]:.3f}", f"{times[torch.float64]:.3f}",
                     f"{times[torch.float64] / times[torch.float32]:.2f}"])
    print(table(rows, ["width", "eigh float32 s", "eigh float64 s", "float64 / float32"]))
    print(f"(median of {repeats})\n")


def synthetic_moment(n: int, alpha: float, outlier: float, tokens: int = 2048,
                     seed: int = 0) -> torch.Tensor:
    """``E[x x^T]`` of ``tokens`` samples ``x = A z`` with eigenvalues ``~ i^-alpha`` in a random
    basis, the first two input features scaled by ``outlier`` (massive activations)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(n, n, generator=g))[0]
    a = basis * torch.arange(1, n + 1, dtype=torch.float32) ** (-alpha / 2)
    x = torch.randn(tokens, n, generator=g) @ a.T
    x[:, :2] *= outlier
    return x.T @ x / tokens


def _timed_pair(first, second, repeats: int):
    """Fastest of ``repeats`` interleaved calls of each (robust to a busy machine), and results."""
    best, out = [math.inf, math.inf], [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            out[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best, out


def _errors(stats, e64: torch.Tensor, v64: torch.Tensor) -> str:
    """Largest relative eigenvalue error / largest principal angle (deg) against float64."""
    return (f"{float(((stats.eigenvalues.double() - e64).abs() / e64).max()):.0e} / "
            f"{max_angle_deg(v64, stats.basis.double()):.3f}")


def solver_comparison(matrices: list[tuple[str, torch.Tensor]], rank: int, repeats: int) -> None:
    """Top-r solver vs full eigh on each matrix: accuracy against float64 eigh, and speed."""
    from mergekit_arm.calibration.eigen import (
        FLOAT32_EIGH_MAX_SPREAD,
        SUBSPACE_MAX_STEPS,
        SUBSPACE_TOL,
        principal_subspace,
        spread_within,
        subspace_eigenpairs,
        use_subspace_iteration,
    )

    rows, totals = [], {"eigh": 0.0, "auto": 0.0}
    for label, c in matrices:
        n = c.shape[0]
        r = min(rank, n)
        e64, v64 = top(c, torch.float64, r)
        (t_eigh, t_auto), (full, fast) = _timed_pair(
            lambda c=c, r=r: principal_subspace(c, r, solver="eigh"),
            lambda c=c, r=r: principal_subspace(c, r, solver="auto"), repeats)
        totals["eigh"] += t_eigh
        totals["auto"] += t_auto
        path, steps = "eigh", "-"
        if use_subspace_iteration(n, r):
            found = subspace_eigenpairs(c, r)
            path = "top-r f32"
            if not spread_within(found.eigenvalues, FLOAT32_EIGH_MAX_SPREAD):
                found = subspace_eigenpairs(c.double(), r, start=found.basis)
                path = "top-r f64"
            steps = str(found.steps)
            if not found.converged:
                path += " -> eigh"
        lob = "-"
        if n >= 3 * r:
            start = time.perf_counter()
            e_l, v_l = torch.lobpcg(c, k=r, largest=True, tol=SUBSPACE_TOL,
                                    niter=SUBSPACE_MAX_STEPS)
            lob = (f"{float(((e_l.double() - e64).abs() / e64).max()):.0e} / "
                   f"{max_angle_deg(v64, v_l.double()):.2f} / {time.perf_counter() - start:.2f}")

        rows.append([label, str(n), str(r), f"{float(e64[0] / e64[-1]):.0e}", path, steps,
                     _errors(full, e64, v64), _errors(fast, e64, v64), f"{t_eigh:.3f}", f"{t_auto:.3f}",
                     f"{t_auto / t_eigh:.2f}", lob])
    print(table(rows, ["matrix", "n", "r", "l1/l_r", "auto path", "steps",
                       "eigh: eig err / deg", "auto: eig err / deg", "eigh s", "auto s",
                       "auto / eigh", "lobpcg: err / deg / s"]))
    print(f"(errors against float64 eigh: largest relative eigenvalue error / largest principal "
          f"angle in degrees; times: fastest of {repeats} interleaved calls, principal_subspace with solver='eigh' "
          f"and solver='auto'; total auto / eigh = {totals['auto'] / totals['eigh']:.2f}; "
          f"lobpcg: torch.lobpcg(tol={SUBSPACE_TOL:g}, niter={SUBSPACE_MAX_STEPS}), one call)\n")


def synthetic_matrices(widths: list[int]) -> list[tuple[str, torch.Tensor]]:
    spectra = [("i^-0.5", 0.5, 1.0), ("i^-1", 1.0, 1.0), ("i^-1, outliers x30", 1.0, 30.0),
               ("i^-2", 2.0, 1.0)]
    return [(label, synthetic_moment(n, alpha, outlier)) for n in widths
            for label, alpha, outlier in spectra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="local causal LM folder")
    parser.add_argument("--quick", action="store_true", help="random tiny model (< 30 s)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--layers", default="0,1,10,29", help="decoder layers to sample")
    parser.add_argument("--scales", default="1,2,3,5,10,30,100")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--solver-only", action="store_true",
                        help="only section 4, on synthetic matrices (no model)")
    parser.add_argument("--widths", default="576,1024,1536,2048",
                        help="widths of the synthetic matrices of section 4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mergekit_arm.calibration import load_calibration_texts, tokenize_texts

    print(f"machine: {os.cpu_count()} CPU, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); load average at start {os.getloadavg()[0]:.2f}")
    widths = [int(w) for w in args.widths.split(",")]
    if args.solver_only:
        print(f"== top-r solver vs full eigh: synthetic second moments, rank {args.rank}")
        solver_comparison(synthetic_matrices(widths), args.rank, args.repeats)
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        return
    if args.quick:
        from transformers import LlamaConfig

        from mergekit_arm.demo import default_demo_texts, train_tokenizer

        model = AutoModelForCausalLM.from_config(LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)).eval()
        tokenizer = train_tokenizer(default_demo_texts(), vocab_size=512, model_max_length=64)
        layers, label = [0, 1], "random tiny Llama"
        args.samples, args.max_length, args.rank, args.scales = 16, 64, 16, "1,10"
    else:
        if not args.model:
            parser.error("--model PATH is required (or --quick)")
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        layers, label = [int(i) for i in args.layers.split(",")], args.model
    texts = load_calibration_texts(None, args.samples, "paragraph")
    tokens = tokenize_texts(tokenizer, texts, args.max_length)
    names = [f"model.layers.{i}.{suffix}" for i in layers for suffix in INPUTS] + ["lm_head"]
    start = time.perf_counter()
    full, halves, counts = collect(model, tokens, tokenizer.pad_token_id or 0, names, 8)
    print(f"== accuracy: {label}, {len(tokens)} texts of the shipped corpus, "
          f"{sum(len(t) for t in tokens)} tokens (forward {time.perf_counter() - start:.0f} s)")
    accuracy(full, halves, counts, args.rank, [float(k) for k in args.scales.split(",")])
    print("== speed: eigh of a random second moment, one call")
    speed(sorted({t.shape[0] for t in full.values()}), 1 if args.quick else 3)
    model_matrices = [(name.replace("model.layers.", "L"), total / sum(counts[name]))
                      for name, total in full.items()]
    if args.quick:
        widths, args.repeats = [256, 512], 1
    print(f"== top-r solver vs full eigh: {label} inputs and synthetic second moments")
    solver_comparison(model_matrices + synthetic_matrices(widths), args.rank, args.repeats)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
