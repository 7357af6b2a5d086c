"""Streaming Merging: time per step split into calibration, merge, evaluation and the rest.

Builds an origin model and two "early checkpoints" (the origin plus small random
displacements; the timing does not depend on them being trained), runs
``mergekit_arm.stream.run_stream`` in mode ``fixed`` for a few steps and reads the
per-phase seconds every step records in ``trajectory.jsonl``
(``seconds: {calibration, merge, evaluation, other, total}``, measured by the driver
itself). "other" is everything outside the three phases: saving the step's model,
the step YAML, the trajectory, the plot and the state file, bookkeeping. The issue's
target is "other" under 10% of a step.

    python benchmarks/bench_stream.py           # default, SmolLM2 width, a few minutes
    python benchmarks/bench_stream.py --quick   # tiny model, < 30 s
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_common import table, warn_if_oversubscribed

PHASES = ("calibration", "merge", "evaluation", "other")


def build_models(root: Path, args) -> tuple[Path, list[Path], Path]:
    """origin + two displaced checkpoints (with the tokenizer), and a validation jsonl."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo import default_demo_texts, make_tiny_model, train_tokenizer

    texts = default_demo_texts()
    tokenizer = train_tokenizer(texts, vocab_size=512, model_max_length=args.max_length)
    overrides = {}
    if not args.quick:
        overrides = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
                     "max_position_embeddings": 2048}
    origin = make_tiny_model(root / "origin", "llama", tokenizer=tokenizer, seed=0,
                             num_layers=args.layers, **overrides)
    checkpoints = []
    for k, scale in ((1, 0.002), (2, 0.004)):
        model = AutoModelForCausalLM.from_pretrained(origin, dtype=torch.float32)
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g))
        path = root / f"ckpt-{k}"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        checkpoints.append(path)
    validation = root / "heldout.jsonl"
    with open(validation, "w") as handle:
        for text in texts[-args.val_samples:]:
            handle.write(json.dumps({"text": text}) + "\n")
    return origin, checkpoints, validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps (< 30 s)")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default 8)")
    parser.add_argument("--steps", type=int, default=None, help="merge steps (default 3)")
    parser.add_argument("--samples", type=int, default=None, help="calibration texts (default 32)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (128)")
    parser.add_argument("--val-samples", type=int, default=16)
    parser.add_argument("--calibration-mode", default="auto",
                        choices=["auto", "all-at-once", "layer-sequential"])
    parser.add_argument("--save-every", type=int, default=1,
                        help="save steps/step-k every N steps (0 = never)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default; 1 with --quick)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.layers = args.layers or (2 if args.quick else 8)
    args.steps = args.steps or (2 if args.quick else 3)
    args.samples = args.samples or (8 if args.quick else 32)
    args.max_length = args.max_length or (32 if args.quick else 128)
    if args.quick and args.threads is None:
        args.threads = 1  # smoke run: immune to a busy machine's thread stalls
    if args.threads:
        torch.set_num_threads(args.threads)
    warn_if_oversubscribed()

    from mergekit_arm.stream import run_stream

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} CPU, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), {gpu}; load average at start {os.getloadavg()[0]:.2f}")
    root = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    try:
        start = time.perf_counter()
        origin, checkpoints, validation = build_models(root, args)
        width = "tiny (hidden 64)" if args.quick else "SmolLM2 width (hidden 576, vocab 49152)"
        print(f"models: {width}, {args.layers} layers, origin + 2 checkpoints, written in "
              f"{time.perf_counter() - start:.0f}s")
        config = {
            "mode": "fixed",
            "origin": str(origin),
            "checkpoints": [{"model": str(c)} for c in checkpoints],
            "steps": args.steps,
            "schedule": {"kind": "constant", "learning_rate": 0.3},
            "calibration": {"samples": args.samples, "max_length": args.max_length,
                            "rank": 32, "mode": args.calibration_mode},
            "validation": {"data": str(validation), "samples": args.val_samples,
                           "max_length": args.max_length},
            "arm": {"rank": 16},
            "save_every": args.save_every or None,
            "device": args.device,
        }
        print(f"stream: {args.steps} steps, calibration {args.samples} texts x <= "
              f"{args.max_length} tokens (mode {args.calibration_mode}), held-out loss on "
              f"{args.val_samples} texts, save_every {args.save_every or 'never'}")
        start = time.perf_counter()
        result = run_stream(config, root / "out", progress=False)
        wall = time.perf_counter() - start
        records = [r for r in result.records if "seconds" in r]
        rows = []
        for r in records:
            s = r["seconds"]
            rows.append([str(r["step"]), *(f"{s.get(p, 0.0):.2f}" for p in PHASES),
                         f"{s['total']:.2f}", f"{100 * s.get('other', 0.0) / s['total']:.1f}%"])
        header = ["step", *(f"{p} s" for p in PHASES), "total s", "other %"]
        print(table(rows, header))
        totals = {p: sum(r["seconds"].get(p, 0.0) for r in records) for p in PHASES}
        total = sum(r["seconds"]["total"] for r in records)
        shares = ", ".join(f"{p} {100 * totals[p] / total:.1f}%" for p in PHASES)
        print(f"all steps: {shares} of {total:.1f} s in steps; run_stream wall time {wall:.1f} s "
              f"(the rest is set-up: loading models, origin statistics, tokenising)")
        other = [100 * r["seconds"].get("other", 0.0) / r["seconds"]["total"] for r in records]
        verdict = "met" if max(other) < 10 else "MISSED"
        print(f"target 'other' < 10% of a step: {verdict} (median {statistics.median(other):.1f}%, "
              f"max {max(other):.1f}%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")






if __name__ == "__main__":
    main()
