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


def check_stream(run: Run, work: Path, steps: int = 2, rate: float = 0.1) -> dict:
    from mergekit_arm.stream import run_stream

    p = run.preset
    origin_dir = _save(run, run.origin, work / "origin")
    c20_dir = _save(run, run.ckpt[0.2], work / "c20")
    data = work / "calibration.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for text in run.calibrator.texts[:p.n_calibration]:
            handle.write(json.dumps({"text": text}) + "\n")
    config = {
        "mode": "fixed", "origin": str(origin_dir), "checkpoints": [str(c20_dir)],
        "start": str(c20_dir), "steps": steps,
        "schedule": {"kind": "constant", "learning_rate": rate},
        "calibration": {"data": str(data), "samples": p.n_calibration,
                        "max_length": p.cal_max_length, "rank": p.rank},
        "arm": {"rank": p.rank, "missing_statistics": "plain"},
        "out_dtype": "float32", "device": "cpu",
    }
    result = run_stream(config, work / "stream-out", progress=False)
    from safetensors.torch import load_file

    folder = Path(getattr(result, "model", None) or getattr(result, "path", None)
                  or work / "stream-out" / "model")
    files = sorted(folder.glob("*.safetensors"))
    theirs: dict[str, torch.Tensor] = {}
    for f in files:
        theirs.update(load_file(f))
    s_origin = run.calibrator(run.origin, "check-origin")
    ours = merges.arm_stream(run.ckpt[0.2], run.origin, [], s_origin, run.calibrator,
                             lambda s: 0.0, steps=steps, min_steps=steps,
                             rates=[rate] * steps, rank=p.rank, label="check", log=run.log)
    # arm_stream keeps the best validation step; with a constant 0.0 loss and min_steps
    # = steps that is the last step.
    mine = ours.best_state
    diffs, norms = 0.0, 0.0
    for k, v in mine.items():
        if k in theirs:
            diffs = max(diffs, float((theirs[k].float() - v).abs().max()))
            norms = max(norms, float(v.abs().max()))
    moved = max(float((mine[k] - run.ckpt[0.2][k]).abs().max()) for k in mine)
    return {"steps": steps, "rate": rate, "tensors_compared": len(set(mine) & set(theirs)),
            "max_abs_difference": diffs, "max_abs_weight": norms,
            "max_abs_change_from_c20": moved, "run_stream_folder": str(folder)}
