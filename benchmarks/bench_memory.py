"""Peak memory of calibration and merging against model size, past the machine's RAM.

For each size S (GB of bf16 weights on disk) the script

1. writes two random Llama-shaped models of S GB, an "origin" and a "current" one, shard
   by shard with safetensors (one decoder layer in memory at a time; same width for
   every size, only the depth grows, so the per-layer cost is constant). The current
   model is ``origin + 0.1 * roll(origin)`` per tensor (a cheap, non-trivial
   displacement: the figures measured here do not depend on what the weights hold);
2. calibrates the current model with ``arm-calibrate --mode layer-sequential`` (layers
   read lazily from disk, one on the CPU at a time) in a subprocess, few tokens. The
   origin's statistics are a copy of that file, so the merge runs with
   ``verify_statistics: false`` (the file's weight probes are the current model's);
   ``--calibrate-origin`` calibrates the origin too, doubling the time: the
   eigendecompositions, a fixed cost per layer, dominate calibration at these token
   counts (about 5 s per 1024-wide layer on one busy core);
3. merges with plain ``mergekit-yaml`` (``merge_method: arm``, ``--lazy-unpickle``,
   small output shards) in a subprocess;
4. deletes the models before the next size.

Memory, per subprocess, sampled every 50 ms from ``/proc/PID/status``: ``peak RSS`` is
the kernel's high-water mark of the process's own address space (``VmHWM``, read until
it exits; it counts the pages of memory-mapped safetensors files that were touched, which
the kernel can drop at any time), and ``peak anon`` the largest anonymous resident memory
(``RssAnon``, summed over the process tree): the memory the process actually holds. Flat
in S means the method's memory does not grow with the model. (``ru_maxrss`` from
``wait4`` is not used: Linux folds the RSS of the address space a child replaced at
``exec``, here a fork of this script, into it, so it reports this script's own RSS
whenever that is larger than the child's.)

    python benchmarks/bench_memory.py --sizes 1,2           # ~10 min on one core
    python benchmarks/bench_memory.py --sizes 1,2,4,8,14 --out benchmarks/results
    python benchmarks/bench_memory.py --quick               # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from bench_common import table

SHARD_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Shape:
    """A Llama shape; ``layers`` follows from the size on disk."""

    hidden: int = 512
    intermediate: int = 1024
    heads: int = 8
    kv_heads: int = 2
    vocab: int = 32000

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def layer_tensors(self, i: int) -> dict[str, tuple[int, ...]]:
        p, h, kv = f"model.layers.{i}.", self.hidden, self.kv_heads * self.head_dim
        return {
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (self.intermediate, h),
            p + "mlp.up_proj.weight": (self.intermediate, h),
            p + "mlp.down_proj.weight": (h, self.intermediate),
        }

    def outer_tensors(self) -> dict[str, tuple[int, ...]]:
        return {"model.embed_tokens.weight": (self.vocab, self.hidden),
                "model.norm.weight": (self.hidden,),
                "lm_head.weight": (self.vocab, self.hidden)}

    def layers_for(self, gigabytes: float) -> int:
        """Depth whose bf16 weights take ``gigabytes`` * 1e9 bytes (at least one layer)."""
        per_layer = 2 * sum(_numel(s) for s in self.layer_tensors(0).values())
        outer = 2 * sum(_numel(s) for s in self.outer_tensors().values())
        return max(1, round((gigabytes * 1e9 - outer) / per_layer))

    def config(self, layers: int) -> dict:
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
                "num_hidden_layers": layers, "vocab_size": self.vocab,
                "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "hidden_act": "silu",
                "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _random(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)
    return (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)


def write_models(origin: Path, current: Path, shape: Shape, layers: int, tokenizer) -> int:
    """Write both models shard by shard; at most one shard of each is in memory."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    names = list(shape.outer_tensors().items())
    for i in range(layers):
        names.extend(shape.layer_tensors(i).items())
    index: dict[str, dict[str, str]] = {"origin": {}, "current": {}}
    shard: dict[str, torch.Tensor] = {}
    size = shard_no = total = 0

    def flush() -> None:
        nonlocal shard, size, shard_no
        if not shard:
            return
        shard_no += 1
        file = f"model-{shard_no:05d}.safetensors"
        save_file(shard, str(origin / file), metadata={"format": "pt"})
        moved = {k: v + 0.1 * torch.roll(v, 1, dims=0) for k, v in shard.items()}
        save_file(moved, str(current / file), metadata={"format": "pt"})
        for k in shard:
            index["origin"][k] = index["current"][k] = file
        shard, size = {}, 0

    for name, dims in names:
        shard[name] = _random(dims, generator)
        size += 2 * _numel(dims)
        total += 2 * _numel(dims)
        if size >= SHARD_BYTES:
            flush()
    flush()
    for folder, key in ((origin, "origin"), (current, "current")):
        (folder / "config.json").write_text(json.dumps(shape.config(layers)), encoding="utf-8")
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": index[key]}),
            encoding="utf-8")
        tokenizer.save_pretrained(folder)
    return total


def _status_kib(pid: int, *fields: str) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/PID/status`` (empty if the process is gone)."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in fields:
                    found[key] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _tree_memory_kib(root_pid: int) -> tuple[int, int]:
    """(sum of ``RssAnon`` over the process tree, largest ``VmHWM`` in it), in KiB."""
    import psutil

    try:
        pids = [root_pid, *(c.pid for c in psutil.Process(root_pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0, 0
    anon = hwm = 0
    for pid in pids:
        status = _status_kib(pid, "RssAnon", "VmHWM")
        anon += status.get("RssAnon", 0)
        hwm = max(hwm, status.get("VmHWM", 0))
    return anon, hwm


def measured_run(command: list[str], log: Path, env: dict[str, str]) -> dict:
    """Run ``command``; wall seconds, sampled peak RSS (``VmHWM``) and peak anonymous
    memory of its process tree."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak_anon = peak_hwm = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_anon, peak_hwm
            while not done.is_set():
                anon, hwm = _tree_memory_kib(proc.pid)
                peak_anon, peak_hwm = max(peak_anon, anon), max(peak_hwm, hwm)
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status = os.waitpid(proc.pid, 0)
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode}); see {log}:\n"
                         + log.read_text(encoding="utf-8")[-3000:])
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_hwm / 1024,
            "peak_anon_mib": peak_anon / 1024}


def merge_yaml(origin: Path, current: Path, origin_stats: Path, stats: Path,
               verify: bool) -> str:
    return "\n".join([
        "merge_method: arm",
        f"base_model: {current}",
        "models:",
        f"  - model: {origin}",
        "    parameters:",
        "      origin: true",
        f"      activations: {origin_stats}",
        "parameters:",
        "  learning_rate: 0.5",
        f"  activations: {stats}",
        "  rank: 16",
        *([] if verify else ["  verify_statistics: false  # the origin's file is a copy"]),
        "dtype: float32",
        "out_dtype: bfloat16", ""])


def task_arithmetic_yaml(origin: Path, current: Path) -> str:
    """``current + 0.5 (current - origin)``: the arm step above with the rotation off."""
    return "\n".join([
        "merge_method: task_arithmetic",
        f"base_model: {origin}",
        "models:",
        f"  - model: {current}",
        "    parameters: {weight: 1.5}",
        "dtype: float32",
        "out_dtype: bfloat16", ""])


def merge_measured(config: Path, merged: Path, total: int, log: Path,
                   env: dict[str, str]) -> dict:
    """``mergekit-yaml config merged`` (lazy, small shards, one thread) measured; fails if
    the output holds far fewer weight bytes than the inputs."""
    merge = python_command("from mergekit.scripts.run_yaml import main; main()") + [
        str(config), str(merged), "--lazy-unpickle", "--out-shard-size", "250M",
        "--no-copy-tokenizer", "--no-write-model-card", "--quiet", "-j", "1"]
    result = measured_run(merge, log, env)
    merged_bytes = sum(f.stat().st_size for f in merged.glob("*.safetensors"))
    if merged_bytes < 0.9 * total:
        raise SystemExit(f"the merged model in {merged} holds {merged_bytes} bytes of weights, "
                         f"expected about {total}; see {log}")
    return result


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run_size(size: float, shape: Shape, args, root: Path, tokenizer, env) -> dict:
    layers = shape.layers_for(size)
    work = root / f"size-{size:g}"
    origin, current, merged = work / "origin", work / "current", work / "merged"
    for folder in (origin, current):
        folder.mkdir(parents=True)
    start = time.perf_counter()
    total = write_models(origin, current, shape, layers, tokenizer)
    written = time.perf_counter() - start
    stats = {name: work / f"{name}.stats.safetensors" for name in ("origin", "current")}
    cal = {}
    names = (("origin", origin), ("current", current)) if args.calibrate_origin else (
        ("current", current),)
    for name, folder in names:
        calibrate = python_command("from mergekit_arm.scripts.calibrate import main; main()") + [
            str(folder), str(stats[name]), "--mode", "layer-sequential", "--device", "cpu",
            "--dtype", "bfloat16", "--samples", str(args.samples), "--max-length",
            str(args.max_length), "--batch-size", str(args.samples), "--rank", "17", "-q"]
        cal[name] = measured_run(calibrate, work / f"calibrate-{name}.log", env)
    if not args.calibrate_origin:
        shutil.copyfile(stats["current"], stats["origin"])
    config = work / "merge.yml"
    config.write_text(merge_yaml(origin, current, stats["origin"], stats["current"],
                                 verify=args.calibrate_origin), encoding="utf-8")
    print(f"  {size:g} GB: {layers} layers written in {written:.0f} s; calibration "
          f"{cal['current']['seconds']:.0f} s", flush=True)
    mrg = merge_measured(config, merged, total, work / "merge.log", env)
    reference = None
    if args.reference:
        # The same step with MergeKit's own task_arithmetic (no statistics): what MergeKit
        # itself holds per tensor, to set the arm merge's figures against.
        ref_config = work / "merge-task-arithmetic.yml"
        ref_config.write_text(task_arithmetic_yaml(origin, current), encoding="utf-8")
        reference = merge_measured(ref_config, work / "merged-task-arithmetic", total,
                                   work / "merge-task-arithmetic.log", env)
    row = {"size_gb": size, "layers": layers, "weights_bytes": total,
           "write_seconds": written, "stats_bytes": stats["current"].stat().st_size,
           "calibrate": cal["current"], "calibrate_origin": cal.get("origin"),
           "origin_statistics": "calibrated" if args.calibrate_origin else "copy of current's",
           "merge": mrg, "merge_task_arithmetic": reference}
    if not args.keep:
        shutil.rmtree(work)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8",
                        help="comma-separated GB of bf16 weights (e.g. 1,2,4,8,14: 14 is past "
                             "half of a 24 GB machine's RAM)")
    parser.add_argument("--quick", action="store_true", help="tiny shape and sizes (seconds)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--calibrate-origin", action="store_true",
                        help="calibrate the origin too (default: a copy of the current's file)")
    parser.add_argument("--samples", type=int, default=4, help="calibration texts")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text")
    parser.add_argument("--threads", type=int, default=1, help="threads of each subprocess")
    parser.add_argument("--workdir", default=None, help="where the models go (default: temp)")
    parser.add_argument("--out", default=None, help="also write bench-memory.json here")
    parser.add_argument("--keep", action="store_true", help="keep the models and logs")
    parser.add_argument("--reference", action="store_true",
                        help="also merge with MergeKit's task_arithmetic (same step, no "
                             "statistics) and record its memory next to arm's")
    args = parser.parse_args()
    shape = Shape(hidden=args.hidden, intermediate=args.intermediate, heads=args.heads,
                  kv_heads=args.kv_heads)
    sizes = [float(s) for s in args.sizes.split(",")]
    if args.quick:
        shape = Shape(hidden=128, intermediate=256, heads=4, kv_heads=2, vocab=1024)
        sizes = [0.01, 0.02]
    torch.set_num_threads(args.threads)
    from mergekit_arm._io import write_text_atomic
    from mergekit_arm.demo import train_tokenizer

    texts = [f"calibration text {i}: the quick brown fox jumps over {i * 7} lazy dogs."
             for i in range(200)]
    tokenizer = train_tokenizer(texts, vocab_size=min(512, shape.vocab))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TOKENIZERS_PARALLELISM="false")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_memory_"))
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    need = 3.2 * max(sizes) * 1e9
    if free < need:
        raise SystemExit(f"{root} has {free / 1e9:.1f} GB free; the {max(sizes):g} GB size needs "
                         f"about {need / 1e9:.0f} GB (origin, current, merged): free space or "
                         "pass --workdir on a larger disk")
    with open("/proc/meminfo", encoding="ascii") as f:
        ram = int(f.readline().split()[1]) * 1024
    print(f"machine: {os.cpu_count()} CPU, {ram / 2**30:.1f} GiB RAM, torch {torch.__version__}; "
          f"{args.threads} thread(s) per subprocess; shape hidden {shape.hidden}, intermediate "
          f"{shape.intermediate}, heads {shape.heads}/{shape.kv_heads}, vocab {shape.vocab}; "
          f"calibration {args.samples} x {args.max_length} tokens; origin statistics: "
          + ("calibrated" if args.calibrate_origin else "a copy of the current model's"),
          flush=True)
    rows: list[dict] = []

    def write_rows() -> None:
        """The rows so far, atomically: a size that is still running (or is interrupted)
        leaves the finished sizes recorded, marked incomplete."""
        if not args.out:
            return
        out = Path(args.out) / ("bench-memory-quick.json" if args.quick else "bench-memory.json")
        payload = {"command": " ".join(sys.argv), "ram_bytes": ram, "shape": asdict(shape),
                   "threads": args.threads, "sizes_requested": sizes,
                   "complete": len(rows) == len(sizes), "rows": rows}
        write_text_atomic(out, json.dumps(payload, indent=1))
        print(f"wrote {out} ({len(rows)} of {len(sizes)} sizes)", flush=True)

    try:
        for size in sizes:
            row = run_size(size, shape, args, root, tokenizer, env)
            rows.append(row)
            print(f"size {size:g} GB ({row['layers']} layers): calibrate "
                  f"{row['calibrate']['seconds']:.0f} s, peak RSS "
                  f"{row['calibrate']['peak_rss_mib']:.0f} MiB; merge "
                  f"{row['merge']['seconds']:.0f} s, peak RSS "
                  f"{row['merge']['peak_rss_mib']:.0f} MiB", flush=True)
            write_rows()
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    header = ["weights GB", "layers", "calib peak RSS MiB", "calib peak anon MiB", "calib s",
              "merge peak RSS MiB", "merge peak anon MiB", "merge s"]
    if args.reference:
        header += ["task_arithmetic peak RSS MiB", "task_arithmetic peak anon MiB"]

    def cells(r: dict) -> list[str]:
        ref = r.get("merge_task_arithmetic")
        return [f"{r['weights_bytes'] / 1e9:.2f}", str(r["layers"]),
                f"{r['calibrate']['peak_rss_mib']:.0f}", f"{r['calibrate']['peak_anon_mib']:.0f}",
                f"{r['calibrate']['seconds']:.0f}", f"{r['merge']['peak_rss_mib']:.0f}",
                f"{r['merge']['peak_anon_mib']:.0f}", f"{r['merge']['seconds']:.0f}",
                *([f"{ref['peak_rss_mib']:.0f}", f"{ref['peak_anon_mib']:.0f}"] if ref else [])]

    print(table([cells(r) for r in rows], header))


if __name__ == "__main__":
    main()
