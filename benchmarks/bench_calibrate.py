"""Calibration cost: tokens/s against a plain forward, and peak memory against model depth.

1. Throughput. A random SmolLM2-135M-shaped Llama (float32 on the CPU, bf16 on CUDA)
   runs over the same random token batches as

   * a plain ``model(input_ids=..., attention_mask=..., use_cache=False)`` forward,
   * ``collect_statistics(mode="all-at-once")`` (forward with input hooks),
   * ``collect_statistics(mode="layer-sequential")`` (one decoder layer at a time),

   interleaved in one process (plain, all-at-once, layer-sequential, plain). Reported:
   tokens/s of each, the ratio of the statistics pass to the plain forward for the
   token-proportional part (forward + accumulation of ``x x^T``) and in total (with the
   eigendecompositions, a fixed cost per model), and that total projected to the default
   ``arm-calibrate`` run (128 samples x 512 tokens = 65,536 tokens), where the fixed
   cost is amortised over 16x to 32x more tokens than measured here.

2. The accumulation of ``x^T x`` alone: the full product against row panels of its lower
   block triangle (what ``InputSecondMoments`` does), per input width.

3. ``mode: auto``: the whole pass in each mode against a plain forward, per model size.

4. Peak memory beyond the weights, for models of equal width (default hidden 384 /
   intermediate 1024 to keep the run short; ``--mem-hidden 576 --mem-intermediate 1536``
   for SmolLM2's) and depth 2, 4, 8 and 16. Method: the PyTorch profiler with ``profile_memory=True`` records every
   CPU-allocator allocation and free during the pass; the peak of its running
   "Total Allocated" counter is the most memory the pass held at once on top of what
   existed before it started (the weights, for a model already in memory). It is exact
   and deterministic (no RSS sampling). Modes: all-at-once; layer-sequential on the
   in-memory model; layer-sequential with the layers read lazily from safetensors
   (then the figure includes the one layer being read, and the weights column shows
   what stays resident: embeddings, final norm, lm_head).

    python benchmarks/bench_calibrate.py           # default, a few minutes on 2 CPU cores
    python benchmarks/bench_calibrate.py --quick   # smoke run, < 30 s
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from bench_common import table, warn_if_oversubscribed

DEFAULT_TOKENS = 128 * 512  # arm-calibrate defaults: --samples 128 --max-length 512


def smollm2_config(layers: int, vocab: int = 49152, hidden: int = 576, intermediate: int = 1536,
                   heads: int = 9, kv_heads: int = 3):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads,
                       head_dim=hidden // heads, vocab_size=vocab, tie_word_embeddings=True,
                       max_position_embeddings=2048, architectures=["LlamaForCausalLM"])


def random_model(config, dtype: torch.dtype, device: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(device=device, dtype=dtype).eval()


def random_tokens(samples: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """Token lists of varying length (3/4 to all of ``length``), so batches carry padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3 * length // 4, length + 1, (samples,), generator=g)
    return [torch.randint(1, vocab, (int(n),), generator=g).tolist() for n in lengths]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_forward(model, token_lists, batch_size: int, device: str) -> float:
    from mergekit_arm.calibration import iter_batches

    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in iter_batches(token_lists, batch_size, 0):
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    sync(device)
    return time.perf_counter() - start


def statistics_pass(model, token_lists, batch_size: int, rank: int, mode: str, device: str):
    from mergekit_arm.calibration import collect_statistics

    sync(device)
    start = time.perf_counter()
    _, timings = collect_statistics(model, token_lists, 0, rank, batch_size, False, mode=mode)
    sync(device)
    total = time.perf_counter() - start
    eigen = timings["eigen"]
    return total - eigen, eigen, total


def throughput(args, device: str, dtype: torch.dtype) -> None:
    layers = 2 if args.quick else 30
    vocab = 2048 if args.quick else 49152
    if args.quick:
        config = smollm2_config(layers, vocab=vocab, hidden=128, intermediate=384, heads=4,
                                kv_heads=2)
    else:
        config = smollm2_config(layers, vocab=vocab)
    model = random_model(config, dtype, device)
    tokens = random_tokens(args.samples, args.length, vocab)
    n_tokens = sum(len(t) for t in tokens)
    params = sum(p.numel() for p in model.parameters())
    shape = "quick: hidden 128" if args.quick else "SmolLM2-135M shape"
    print(f"== throughput: {shape}, {layers} layers, vocab {vocab} ({params / 1e6:.0f}M "
          f"parameters, {dtype}, {device}); {len(tokens)} samples, {n_tokens} tokens, batch "
          f"{args.batch_size}, rank {args.rank}")
    plain_forward(model, tokens[: args.batch_size], args.batch_size, device)  # warm-up
    plain = [plain_forward(model, tokens, args.batch_size, device)]
    runs = {}
    for mode in ("all-at-once", "layer-sequential"):
        runs[mode] = statistics_pass(model, tokens, args.batch_size, args.rank, mode, device)
    plain.append(plain_forward(model, tokens, args.batch_size, device))
    base = statistics.mean(plain)
    print(f"plain forward: {' / '.join(f'{p:.2f}' for p in plain)} s (before / after), "
          f"mean {base:.2f} s = {n_tokens / base:.0f} tokens/s")
    header = ["pass", "fwd+stats s", "eigen s", "total s", "tokens/s", "fwd+stats / plain",
              "total / plain", f"total / plain @ {DEFAULT_TOKENS} tok"]
    rows = []
    for mode, (fwd, eigen, total) in runs.items():
        scale = DEFAULT_TOKENS / n_tokens
        projected = (fwd * scale + eigen) / (base * scale)
        rows.append([mode, f"{fwd:.2f}", f"{eigen:.2f}", f"{total:.2f}", f"{n_tokens / total:.0f}",
                     f"{fwd / base:.2f}", f"{total / base:.2f}", f"{projected:.2f}"])
    print(table(rows, header))
    print("(target: statistics cost <= 30% on top of the forward, i.e. a ratio <= 1.30)\n")


# -- accumulation ---------------------------------------------------------------------------


def accumulation(args, device: str) -> None:
    """Time of ``sum x x^T`` for one batch: the full product vs lower-triangle row panels."""
    from mergekit_arm.calibration.moments import accumulate_lower_gram, lower_panels

    widths = [128, 576] if args.quick else [64, 128, 256, 576, 1536]
    tokens = 512 if args.quick else 4096
    repeats = 3 if args.quick else 7
    print(f"== accumulation of x^T x: {tokens} tokens (one batch), float32, {device}; median of "
          f"{repeats}; panels = row panels of the lower block triangle (used: lower_panels)")

    def timed(fn) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    rows = []
    for n in widths:
        x = torch.randn(tokens, n, device=device)
        total = torch.zeros(n, n, device=device)
        full = timed(partial(total.addmm_, x.T, x))
        row = [str(n), f"{full * 1e3:.2f}"]
        for count in (2, 4, 8, 16):
            edges = [round(i * n / count) for i in range(count + 1)]
            panels = list(zip(edges[:-1], edges[1:]))
            row.append(f"{timed(partial(accumulate_lower_gram, total, x, panels)) / full:.2f}")
        used = lower_panels(n)
        used_time = timed(partial(accumulate_lower_gram, total, x, used))
        row += [str(len(used)), f"{used_time / full:.2f}"]
        rows.append(row)
    print(table(rows, ["width", "full ms", "2 panels", "4", "8", "16", "used", "used / full"]))
    print("(ratios: time / full product; flops of p panels: (p + 1) / 2p of the full product)\n")


# -- mode choice ----------------------------------------------------------------------------

MODE_SIZES = {  # label: (hidden, intermediate, layers, heads, kv heads, vocab)
    "tiny (test models)": (64, 128, 2, 4, 2, 512),
    "hidden 128, 2 layers": (128, 384, 2, 4, 2, 2048),
    "hidden 384, 8 layers": (384, 1024, 8, 6, 2, 49152),
    "SmolLM2 width, 8 layers": (576, 1536, 8, 9, 3, 49152),
}


def mode_choice(args, device: str, dtype: torch.dtype) -> None:
    """Each mode per model size, against a plain forward (what ``mode: auto`` picks by)."""
    sizes = dict(list(MODE_SIZES.items())[:2]) if args.quick else MODE_SIZES
    repeats = 1 if args.quick else 3
    print(f"== mode choice: {args.samples} samples x <= {args.length} tokens, batch "
          f"{args.batch_size}, rank {args.rank}; median of {repeats}, plain forward and both "
          "modes interleaved; 'fwd+stats' = forward with accumulation, 'total' adds the eigen part")
    rows = []
    for label, (hidden, inter, layers, heads, kv, vocab) in sizes.items():
        config = smollm2_config(layers, vocab=vocab, hidden=hidden, intermediate=inter,
                                heads=heads, kv_heads=kv)
        model = random_model(config, dtype, device)
        tokens = random_tokens(args.samples, args.length, vocab, seed=2)
        modes = ("all-at-once", "layer-sequential")
        runs: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
        plain: list[float] = []
        plain_forward(model, tokens, args.batch_size, device)  # untimed warm-up
        for mode in modes:
            statistics_pass(model, tokens, args.batch_size, args.rank, mode, device)
        for _ in range(repeats):
            plain.append(plain_forward(model, tokens, args.batch_size, device))
            for mode in modes:
                runs[mode].append(statistics_pass(model, tokens, args.batch_size, args.rank,
                                                  mode, device))
        base = statistics.median(plain)
        fwd = {m: statistics.median(r[0] for r in runs[m]) for m in modes}
        total = {m: statistics.median(r[2] for r in runs[m]) for m in modes}
        params = sum(p.numel() for p in model.parameters())
        rows.append([label, f"{params / 1e6:.1f}M", f"{base:.3f}",
                     f"{fwd['all-at-once'] / base:.2f}", f"{fwd['layer-sequential'] / base:.2f}",
                     f"{total['all-at-once']:.3f}", f"{total['layer-sequential']:.3f}",
                     f"{total['layer-sequential'] / total['all-at-once']:.2f}",
                     min(total, key=total.get)])
        del model
    print(table(rows, ["model", "parameters", "plain s", "aao fwd+stats / plain",
                       "layer-seq fwd+stats / plain", "aao total s", "layer-seq total s",
                       "layer-seq / aao", "faster"]))
    print()


# -- memory ---------------------------------------------------------------------------------


def peak_allocated(fn) -> int:
    """Peak of the profiler's CPU 'Total Allocated' counter while ``fn`` runs (bytes)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        path = handle.name
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0]
    return max([0, *totals])


def memory_vs_depth(args) -> None:
    from mergekit_arm.calibration import (
        TokenBatches,
        collect_statistics,
        collect_statistics_layerwise,
        load_lazy_causal_lm,
    )

    depths = [2, 4] if args.quick else [2, 4, 8, 16]
    vocab = 2048 if args.quick else 49152
    hidden, inter = args.mem_hidden, args.mem_intermediate
    heads = 9 if hidden % 9 == 0 else (6 if hidden % 6 == 0 else 4)
    tokens = random_tokens(args.mem_samples, args.mem_length, vocab, seed=1)
    n_tokens = sum(len(t) for t in tokens)
    print(f"== peak memory beyond the weights (CPU allocator, profiler): hidden {hidden}, "
          f"intermediate {inter}, vocab {vocab}, float32, {len(tokens)} samples / "
          f"{n_tokens} tokens, batch {args.batch_size}, rank {args.rank}")
    mib = 1 << 20
    rows, results = [], {}
    workdir = Path(tempfile.mkdtemp(prefix="bench_calibrate_"))
    try:
        for depth in depths:
            config = smollm2_config(depth, vocab=vocab, hidden=hidden, intermediate=inter,
                                    heads=heads, kv_heads=heads // 3)
            model = random_model(config, torch.float32, "cpu")
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            folder = workdir / f"d{depth}"
            model.save_pretrained(folder)
            peaks = {}
            for mode in ("all-at-once", "layer-sequential"):
                peaks[mode] = peak_allocated(partial(
                    collect_statistics, model, tokens, 0, args.rank, args.batch_size, False,
                    mode=mode))
            del model
            lazy = load_lazy_causal_lm(folder, "float32")
            resident = sum(p.numel() * p.element_size() for p in lazy.parameters()
                           if p.device.type != "meta")
            peaks["lazy"] = peak_allocated(partial(
                collect_statistics_layerwise, lazy, TokenBatches(tokens, 0, args.batch_size),
                args.rank, progress=False))
            del lazy
            shutil.rmtree(folder)
            results[depth] = peaks
            rows.append([str(depth), f"{weights / mib:.0f}", f"{peaks['all-at-once'] / mib:.1f}",
                         f"{peaks['layer-sequential'] / mib:.1f}", f"{resident / mib:.0f}",
                         f"{peaks['lazy'] / mib:.1f}"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows, ["layers", "weights MiB", "all-at-once MiB", "layer-seq MiB",
                       "lazy: resident MiB", "lazy: peak MiB"]))
    lo, hi = depths[0], depths[-1]
    for key, label in (("all-at-once", "all-at-once"), ("layer-sequential", "layer-sequential"),
                       ("lazy", "layer-sequential, lazy")):
        slope = (results[hi][key] - results[lo][key]) / (hi - lo) / mib
        print(f"{label:>24}: {slope:+.2f} MiB per extra layer ({lo} -> {hi} layers)")
    rank = min(args.rank, hidden)
    per_layer = 4 * (rank + 1) * (3 * hidden + inter)  # the results: bases + eigenvalues
    print(f"(target: flat in depth; the results themselves, rank x in floats per distinct "
          f"input, are {per_layer / mib:.2f} MiB per layer)\n")




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (< 30 s)")
    parser.add_argument("--samples", type=int, default=None, help="throughput: samples (default 16)")
    parser.add_argument("--length", type=int, default=None, help="throughput: tokens per sample (256)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--mem-samples", type=int, default=None, help="memory: samples (default 8)")
    parser.add_argument("--mem-length", type=int, default=None, help="memory: tokens per sample (128)")
    parser.add_argument("--mem-hidden", type=int, default=384,
                        help="memory: hidden size (576 = SmolLM2's)")
    parser.add_argument("--mem-intermediate", type=int, default=1024,
                        help="memory: intermediate size (1536 = SmolLM2's)")
    parser.add_argument("--device", default="cpu", help="throughput device (cpu or cuda)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="model dtype of the timed passes (auto: bfloat16 on CUDA, float32 "
                             "on the CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default; 1 with --quick)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-accumulation", action="store_true",
                        help="skip the x^T x timing (full product vs lower-triangle panels)")
    parser.add_argument("--skip-modes", action="store_true",
                        help="skip the all-at-once vs layer-sequential timing per model size")
    args = parser.parse_args()
    args.samples = args.samples or (4 if args.quick else 8)
    args.length = args.length or (32 if args.quick else 256)
    args.mem_samples = args.mem_samples or (4 if args.quick else 8)
    args.mem_length = args.mem_length or (32 if args.quick else 128)
    if args.quick:
        args.mem_hidden, args.mem_intermediate = 128, 384
    if args.quick and args.threads is None:
        args.threads = 1  # smoke run: immune to a busy machine's thread stalls
    if args.threads:
        torch.set_num_threads(args.threads)
    warn_if_oversubscribed()
    device = args.device
    dtype = ({"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
             if args.dtype != "auto" else
             torch.bfloat16 if device.startswith("cuda") else torch.float32)

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} CPU, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), {gpu}; load average at start {os.getloadavg()[0]:.2f}")
    if not args.skip_throughput:
        throughput(args, device, dtype)
    if not args.skip_accumulation:
        accumulation(args, device)
    if not args.skip_modes:
        mode_choice(args, device, dtype)
    if not args.skip_memory:
        memory_vs_depth(args)
    print(f"load average at end {os.getloadavg()[0]:.2f}")




if __name__ == "__main__":
    main()
