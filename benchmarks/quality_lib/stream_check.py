"""Cross-check: the benchmark's in-memory fixed-set driver vs ``mergekit_arm.stream.run_stream``.

Runs both on the same origin, 20% checkpoint and calibration texts for a few steps with a
constant rate and compares the final weights. Used by ``quality.py --check-stream``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import merges
from .pipeline import Run
from .train import load_state


def _save(run: Run, state, folder: Path) -> Path:
    load_state(run.model, state)
    run.model.save_pretrained(folder)
    run.tokenizer.save_pretrained(folder)
    return folder


def _compare(run: Run, folder: Path, mine: dict, start: dict) -> dict:
    from safetensors.torch import load_file

    theirs: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        theirs.update(load_file(f))
    diffs, norms = 0.0, 0.0
    for k, v in mine.items():
        if k in theirs:
            diffs = max(diffs, float((theirs[k].float() - v).abs().max()))
            norms = max(norms, float(v.abs().max()))
    moved = max(float((mine[k] - start[k]).abs().max()) for k in mine)
    return {"tensors_compared": len(set(mine) & set(theirs)), "max_abs_difference": diffs,
            "max_abs_weight": norms, "max_abs_change_from_start": moved,
            "run_stream_folder": str(folder)}


def check_stream(run: Run, work: Path, steps: int = 2, rate: float = 0.1) -> dict:
    """Both stream modes the benchmark uses, through run_stream and through merges.arm_stream."""
    from mergekit_arm.stream import run_stream

    p = run.preset
    c10, c20 = run.ckpt[0.1], run.ckpt[0.2]
    origin_dir = _save(run, run.origin, work / "origin")
    c10_dir = _save(run, c10, work / "c10")
    c20_dir = _save(run, c20, work / "c20")
    data = work / "calibration.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for text in run.calibrator.texts[:p.n_calibration]:
            handle.write(json.dumps({"text": text}) + "\n")
    common = {
        "steps": steps, "schedule": {"kind": "constant", "learning_rate": rate},
        "calibration": {"data": str(data), "samples": p.n_calibration,
                        "max_length": p.cal_max_length, "rank": p.rank},
        "arm": {"rank": p.rank, "missing_statistics": "plain"},
        "out_dtype": "float32", "device": "cpu",
    }
    s_origin = run.calibrator(run.origin, "check-origin")
    s_c10 = run.calibrator(c10, "check-c10")
    out = {"steps": steps, "rate": rate}

    # fixed set from c20: from = origin, to = c20, every step
    fixed = run_stream({"mode": "fixed", "origin": str(origin_dir), "checkpoints": [str(c20_dir)],
                        "start": str(c20_dir)} | common, work / "stream-fixed", progress=False)
    ours = merges.arm_stream(c20, merges.fixed_legs(run.origin, s_origin, [c20], steps),
                             run.calibrator, lambda s: 0.0, min_steps=steps,
                             rates=[rate] * steps, rank=p.rank, label="check-fixed", log=run.log)
    # arm_stream keeps the best validation step; with a constant 0.0 loss and min_steps
    # = steps that is the last step.
    out["fixed"] = _compare(run, Path(fixed.model), ours.best_state, c20)

    # stream of checkpoints from the origin: origin -> c10, then c10 -> c20
    ckpt = run_stream({"mode": "checkpoints", "origin": str(origin_dir),
                       "checkpoints": [str(c10_dir), str(c20_dir)]} | common,
                      work / "stream-checkpoints", progress=False)
    legs = merges.checkpoint_legs(run.origin, s_origin, [("c10", c10, s_c10), ("c20", c20, None)])
    ours = merges.arm_stream(run.origin, legs, run.calibrator, lambda s: 0.0, min_steps=2,
                             rates=[rate] * 2, rank=p.rank, start_stats=s_origin,
                             label="check-checkpoints", log=run.log)
    out["checkpoints"] = _compare(run, Path(ckpt.model), ours.best_state, run.origin)
    return out
