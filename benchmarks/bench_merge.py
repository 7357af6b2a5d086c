"""Merge wall time: ``arm`` vs ``task_arithmetic`` vs ``linear`` on the same inputs, and ARM vs rank.

Random Llama-shaped models (bf16 safetensors, no tokenizer) are written to a temporary
folder, then every method runs through ``mergekit.merge.run_merge`` in this one
process, interleaved (linear, task_arithmetic, arm, linear, ...) so drifting machine
load hits all methods alike; the median of the repeats is reported. Inputs:

* ``linear``:           models A and B, weights 0.5 / 0.5
* ``task_arithmetic``:  base A, model B with weight 1.5 (= B + 0.5 (B - A))
* ``arm``:              base B, origin A, learning_rate 0.5 (same step, rotated)

The ARM statistics files are SYNTHETIC: written directly with
``mergekit_arm.statistics.write_statistics`` (random orthonormal bases with r_max = 128,
B's a perturbation of A's, probes taken from the weights, q/k/v and gate/up sharing an
entry as calibration writes them), so no big model has to be calibrated. The merge
reads and uses them exactly like real ones; the time of a merge does not depend on
what the bases contain.

A third section times the kernel alone (``mergekit.merge_methods.merge_tensors`` on
in-memory tensors, per tensor shape), which shows the fixed per-tensor overhead.

    python benchmarks/bench_merge.py            # default, a few minutes on 2 CPU cores
    python benchmarks/bench_merge.py --quick    # smoke run, < 30 s
    python benchmarks/bench_merge.py --cuda     # merges with MergeKit's --cuda
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from bench_common import table, warn_if_oversubscribed

METHODS = ("linear", "task_arithmetic", "arm")
R_MAX = 128


@dataclass(frozen=True)
class Shape:
    label: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    def config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.hidden, intermediate_size=self.intermediate,
            num_hidden_layers=self.layers, num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads, head_dim=self.hidden // self.heads,
            vocab_size=self.vocab, tie_word_embeddings=False, max_position_embeddings=2048,
            dtype="bfloat16", architectures=["LlamaForCausalLM"],
        )


SHAPES = {
    # SmolLM2-135M: hidden 576, intermediate 1536, 30 layers, 9 heads, 3 KV heads, vocab 49152.
    # lm_head is untied here (SmolLM2 ties it), so arm also rotates a 49152 x 576 lm_head.
    "smollm2-135m": Shape("SmolLM2-135M shape (30 layers)", 576, 1536, 30, 9, 3, 49152),
    # Llama-3.2-1B width (hidden 2048, intermediate 8192, 32 heads, 8 KV heads), 2 layers,
    # vocab 32000 (the real 128256-token embedding takes the plain step in every method).
    "1b-2layers": Shape("1B width, 2 layers", 2048, 8192, 2, 32, 8, 32000),
    "tiny": Shape("tiny (hidden 64, 2 layers)", 64, 128, 2, 4, 2, 512),
}


# -- inputs -------------------------------------------------------------------------------


def parameter_shapes(shape: Shape) -> dict[str, torch.Size]:
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(shape.config())
    return {name: p.shape for name, p in model.named_parameters()}


def write_model(folder: Path, shape: Shape, seed: int, base: dict[str, torch.Tensor] | None = None,
                noise: float = 0.002) -> dict[str, torch.Tensor]:
    """Random bf16 weights (B = A + noise when ``base`` is given), config.json, safetensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, size in parameter_shapes(shape).items():
        if base is not None:
            t = base[name].float() + noise * torch.randn(size, generator=g)
        elif len(size) == 1:
            t = torch.ones(size)
        else:
            t = 0.02 * torch.randn(size, generator=g)
        tensors[name] = t.to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    shape.config().save_pretrained(folder)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def _shared_input_groups(names: list[str]) -> dict[str, str]:
    """alias -> stored name, as calibration writes them (q/k/v share, gate/up share)."""
    aliases = {}
    for name in names:
        for alias, owner in ((".k_proj.", ".q_proj."), (".v_proj.", ".q_proj."),
                             (".up_proj.", ".gate_proj.")):
            if alias in name:
                aliases[name] = name.replace(alias, owner)
    return aliases


def write_synthetic_statistics(path: Path, tensors: dict[str, torch.Tensor], seed: int,
                               like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A statistics file for these weights: random orthonormal bases (or a perturbation of
    ``like``'s bases), descending eigenvalues, probes from the weights. Returns the bases."""
    from mergekit_arm.statistics import (
        LayerStatistics,
        StatisticsContent,
        weight_probe,
        write_statistics,
    )

    g = torch.Generator().manual_seed(seed)
    linear = [n for n, t in tensors.items() if t.ndim == 2 and "embed_tokens" not in n]
    aliases = _shared_input_groups(linear)
    layers, bases = {}, {}
    for name in linear:
        if name in aliases:
            continue
        dim = tensors[name].shape[1]
        r = min(R_MAX, dim)
        start = torch.randn(dim, r, generator=g)
        if like is not None:
            start = like[name] + 0.3 * start / dim**0.5
        basis = torch.linalg.qr(start).Q.contiguous()
        eig = torch.logspace(0, -3, r)
        layers[name] = LayerStatistics(basis, eig, eig.sum() * 1.2)
        bases[name] = basis
    content = StatisticsContent(
        layers=layers,
        probes={n: weight_probe(tensors[n]) for n in linear},
        aliases=aliases,
        other_2d_weights=[n for n, t in tensors.items() if t.ndim == 2 and n not in linear],
        metadata={"model": str(path.parent), "calibration_fingerprint": "synthetic-benchmark",
                  "model_fingerprint": f"synthetic-{seed}", "probe_dtype": "bfloat16",
                  "synthetic": "true (benchmarks/bench_merge.py)", "rank": str(R_MAX)},
    )
    write_statistics(path, content)
    return bases


@dataclass
class Inputs:
    a: Path
    b: Path
    stats_a: Path
    stats_b: Path
    params: int
    linear_tensors: int
    tensors: int


def build_inputs(root: Path, shape: Shape) -> Inputs:
    a = write_model(root / "A", shape, seed=1)
    b = write_model(root / "B", shape, seed=2, base=a)
    bases = write_synthetic_statistics(root / "A.stats.safetensors", a, seed=3)
    write_synthetic_statistics(root / "B.stats.safetensors", b, seed=4, like=bases)
    params = sum(t.numel() for t in a.values())
    n_linear = sum(1 for n, t in a.items() if t.ndim == 2 and "embed_tokens" not in n)
    del a, b
    gc.collect()
    return Inputs(root / "A", root / "B", root / "A.stats.safetensors", root / "B.stats.safetensors",
                  params, n_linear, len(parameter_shapes(shape)))


# -- merges -------------------------------------------------------------------------------


def merge_config(method: str, inputs: Inputs, rank: int = 64) -> dict:
    common = {"dtype": "float32", "out_dtype": "bfloat16"}
    if method == "linear":
        return {"merge_method": "linear", **common, "models": [
            {"model": str(inputs.a), "parameters": {"weight": 0.5}},
            {"model": str(inputs.b), "parameters": {"weight": 0.5}}]}
    if method == "task_arithmetic":
        return {"merge_method": "task_arithmetic", **common, "base_model": str(inputs.a),
                "models": [{"model": str(inputs.b), "parameters": {"weight": 1.5}}]}
    if method == "arm":
        return {"merge_method": "arm", **common, "base_model": str(inputs.b),
                "models": [{"model": str(inputs.a), "parameters": {
                    "origin": True, "activations": str(inputs.stats_a)}}],
                "parameters": {"learning_rate": 0.5, "activations": str(inputs.stats_b),
                               "rank": rank}}
    raise ValueError(method)


def run_one(config: dict, out: Path, cuda: bool) -> float:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from mergekit_arm.statistics import clear_cache

    clear_cache()  # every run opens its statistics files anew, like a fresh process
    merge_config_ = MergeConfiguration.model_validate(json.loads(json.dumps(config)))
    options = MergeOptions(cuda=cuda, copy_tokenizer=False, write_model_card=False, quiet=True,
                           lazy_unpickle=True)
    if out.exists():
        shutil.rmtree(out)
    # Flush the previous run's output first: otherwise whichever method runs next pays for
    # writing back its predecessor's dirty pages (seen: serialize 0.6 s after a
    # task_arithmetic run vs 0.08 s after a sync, for the same 325 MB).
    os.sync()
    start = time.perf_counter()
    run_merge(merge_config_, str(out), options=options)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def time_methods(inputs: Inputs, variants: list[tuple[str, str, int]], repeats: int, root: Path,
                 cuda: bool, warm: bool = True) -> dict[str, list[float]]:
    """Interleaved repeats, after one untimed run of each method (page cache, imports)."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    warmed = set() if warm else {method for _, method, _ in variants}
    for _label, method, rank in variants:
        if method not in warmed:
            run_one(merge_config(method, inputs, rank), root / "out", cuda)
            warmed.add(method)
    for _ in range(repeats):
        for label, method, rank in variants:
            times[label].append(run_one(merge_config(method, inputs, rank), root / "out", cuda))
    return times




# -- kernel alone ---------------------------------------------------------------------------


def kernel_microbench(shapes: list[tuple[str, tuple[int, ...]]], rank: int, repeats: int,
                      device: str, root: Path) -> list[list[str]]:
    """Per tensor: median time of merge_tensors('arm') vs merge_tensors('task_arithmetic')."""
    from mergekit.merge_methods import merge_tensors

    from mergekit_arm.statistics import (
        LayerStatistics,
        StatisticsContent,
        weight_probe,
        write_statistics,
    )

    rows = []
    g = torch.Generator().manual_seed(0)
    for label, size in shapes:
        name = "model.layers.0.mlp.down_proj.weight" if len(size) == 2 else "model.norm.weight"
        a = (0.02 * torch.randn(size, generator=g)).to(device)
        b = a + 0.002 * torch.randn(size, generator=g).to(device)
        params = {"learning_rate": 0.5, "rank": rank, "origin": {"A": True, "B": False}}
        if len(size) == 2:
            dim = size[1]
            r = min(R_MAX, dim)
            basis_a = torch.linalg.qr(torch.randn(dim, r, generator=g)).Q
            basis_b = torch.linalg.qr(basis_a + 0.3 * torch.randn(dim, r, generator=g) / dim**0.5).Q
            files = {}
            for key, w, basis in (("A", a, basis_a), ("B", b, basis_b)):
                eig = torch.logspace(0, -3, r)
                content = StatisticsContent(
                    layers={name: LayerStatistics(basis.contiguous(), eig, eig.sum())},
                    probes={name: weight_probe(w)},
                    metadata={"calibration_fingerprint": "synthetic", "probe_dtype": "float32"})
                files[key] = str(write_statistics(root / f"k{key}{label}.st", content))
            params["activations"] = files
        results = {}
        calls = {
            "task_arithmetic": partial(merge_tensors, [a, b], "task_arithmetic", ids=["A", "B"],
                                       base_index=0, name=name,
                                       parameters={"weight": {"A": 1.0, "B": 1.5}}),
            "arm": partial(merge_tensors, [a, b], "arm", ids=["A", "B"], base_index=1, name=name,
                           parameters=params),
        }
        for method, call in calls.items():
            call()
            samples = []
            numel = 1
            for dim in size:
                numel *= dim
            for _ in range(repeats if numel < 4_000_000 else max(3, repeats // 4)):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                call()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                samples.append(time.perf_counter() - start)
            results[method] = statistics.median(samples)
        ta, arm = results["task_arithmetic"], results["arm"]
        del a, b
        rows.append([label, "x".join(map(str, size)), f"{ta * 1e3:.3f}", f"{arm * 1e3:.3f}",
                     f"{arm / ta:.1f}", f"{(arm - ta) * 1e3:.3f}"])
    return rows


def print_profile(shapes: list[str], repeats: int) -> None:
    """The per-phase profile of :mod:`merge_profile` for each shape."""
    from merge_profile import PHASES, profile, weight_kinds

    for key in shapes:
        shape = SHAPES[key]
        kinds = weight_kinds(shape.hidden, shape.intermediate, shape.layers, shape.heads,
                             shape.kv_heads, shape.vocab)
        rows, totals = profile(kinds, repeats=repeats)
        print(f"== arm kernel profile, {shape.label}: ms per tensor (median of {repeats}), "
              f"float32 matmul {totals['gemm GFLOP/s'][0]:.1f} GFLOP/s")
        print(table(rows, ["weight", "shape", "count"] + PHASES + ["floor"]))
        rows = [[phase, f"{totals[phase][0] / 1e3:.3f}", f"{totals[phase][1] / 1e3:.3f}"]
                for phase in PHASES + ["floor (products)"]]
        print("model totals, s (per tensor: statistics/selection/pairing for every weight; "
              "shared: once per statistics entry, as the kernel caches them):")
        print(table(rows, ["phase", "per tensor", "shared"]) + "\n")


# -- main -----------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one repeat (< 30 s)")
    parser.add_argument("--shapes", default=None,
                        help=f"comma-separated, from {', '.join(SHAPES)} (default: smollm2-135m,1b-2layers)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3)")
    parser.add_argument("--ranks", default="8,32,64,128")
    parser.add_argument("--cuda", action="store_true", help="MergeKit --cuda (needs a GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default; 1 with --quick)")
    parser.add_argument("--workdir", default=None, help="where to write the models (default: a temp dir)")
    parser.add_argument("--sections", default="merge,ranks,kernel",
                        help="comma-separated from merge (run_merge side by side), ranks (arm vs "
                             "rank), kernel (merge_tensors per tensor), profile (per-phase profile "
                             "of the arm kernel vs the matrix-product floor)")
    args = parser.parse_args()
    shapes = (args.shapes or ("tiny" if args.quick else "smollm2-135m,1b-2layers")).split(",")
    repeats = args.repeats or (1 if args.quick else 2)
    ranks = [int(r) for r in args.ranks.split(",")]
    if args.quick and args.ranks == "8,32,64,128":
        ranks = [8, 32]
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda needs a CUDA GPU")

    if args.quick and args.threads is None:
        args.threads = 1  # smoke run: immune to a busy machine's thread stalls
    if args.threads:
        torch.set_num_threads(args.threads)
    warn_if_oversubscribed()
    import mergekit_arm

    mergekit_arm.register()
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    print("statistics: SYNTHETIC (random orthonormal bases r_max=128, probes from the weights), "
          "written with mergekit_arm.statistics.write_statistics; no model was calibrated")
    print(f"timing: run_merge in one process, methods interleaved, median of {repeats} repeat(s) "
          f"after one untimed run of each method; {'--cuda' if args.cuda else 'CPU'}; dtype float32, out bf16\n")

    sections = set(args.sections.split(","))
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_merge_"))
    try:
        if "profile" in sections:
            print_profile(shapes, 5 if args.quick else 9)
        for key in shapes if sections & {"merge", "ranks"} else []:
            shape = SHAPES[key]
            root = base / key
            start = time.perf_counter()
            inputs = build_inputs(root, shape)
            print(f"== {shape.label}: {inputs.params / 1e6:.0f}M parameters, {inputs.tensors} "
                  f"tensors ({inputs.linear_tensors} linear weights rotated by arm); inputs "
                  f"written in {time.perf_counter() - start:.0f}s")
            if "merge" in sections:
                variants = [(m, m, 64) for m in METHODS]
                times = time_methods(inputs, variants, repeats, root, args.cuda)
                med = {k: statistics.median(v) for k, v in times.items()}
                rows = [[k, f"{med[k]:.2f}", " ".join(f"{t:.2f}" for t in times[k]),
                         f"{med[k] / med['linear']:.2f}", f"{med[k] / med['task_arithmetic']:.2f}"]
                        for k in METHODS]
                print(table(rows, ["method", "median s", "runs s", "/ linear", "/ task_arith"]))
                print(f"arm (rank 64) / task_arithmetic = {med['arm'] / med['task_arithmetic']:.2f}\n")
            if "ranks" not in sections:
                shutil.rmtree(root)
                continue

            variants = [("task_arithmetic", "task_arithmetic", 0)] + [
                (f"arm rank {r}", "arm", r) for r in ranks]
            times = time_methods(inputs, variants, max(1, repeats - 1), root, args.cuda,
                                 warm="merge" not in sections)  # else warmed up by the first table
            med = {k: statistics.median(v) for k, v in times.items()}
            ta = med["task_arithmetic"]
            rows = [[k, f"{med[k]:.2f}", f"{med[k] / ta:.2f}", f"{med[k] - ta:+.2f}"]
                    for k in med]
            print(f"ARM time vs rank (same inputs, interleaved with task_arithmetic, median of "
                  f"{max(1, repeats - 1)}):")
            print(table(rows, ["variant", "median s", "/ task_arith", "extra s"]) + "\n")
            shutil.rmtree(root)

        if "kernel" not in sections:
            return
        print("== kernel alone: merge_tensors on in-memory float32 tensors, per call "
              f"(median of {5 if args.quick else 20}; 5 for tensors over 4M elements), rank 64, "
              f"{'cuda' if args.cuda else 'cpu'}")
        kshapes = [("norm 1-D", (576,)), ("tiny 64x64", (64, 64)), ("smol q_proj", (576, 576)),
                   ("smol down_proj", (576, 1536)), ("smol gate_proj", (1536, 576))]
        if not args.quick:
            kshapes += [("1B q_proj", (2048, 2048)), ("1B down_proj", (2048, 8192)),
                        ("1B gate_proj", (8192, 2048))]
        rows = kernel_microbench(kshapes, 64, 5 if args.quick else 20,
                                 "cuda" if args.cuda else "cpu", base)
        print(table(rows, ["tensor", "shape", "task_arith ms", "arm ms", "ratio", "extra ms"]))
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)




if __name__ == "__main__":
    main()
