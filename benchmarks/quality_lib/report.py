"""Aggregate seeds and write the markdown + JSON results (never typed by hand)."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

METRICS = (("val", "val loss"), ("loss_gsm_ood", "gsm OOD loss"), ("loss_gsm_id", "gsm ID loss"),
           ("loss_arith", "arith loss"), ("acc_gsm_ood", "gsm OOD acc"),
           ("acc_arith", "arith acc"))


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, s


def aggregate(per_seed: list[dict], candidates: tuple[str, ...]) -> dict:
    table = {}
    for name in candidates:
        rows = [s["results"][name] for s in per_seed if name in s["results"]]
        if not rows:
            continue
        table[name] = {key: dict(zip(("mean", "std"), mean_std([r[key] for r in rows])))
                       for key, _ in METRICS}
        table[name]["n_seeds"] = len(rows)
    return table


def machine() -> dict:
    import torch
    import transformers

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads()}
    try:
        import os

        info["cpus"] = os.cpu_count()
    except Exception:  # pragma: no cover
        pass
    return info


def _fmt(cell: dict, n: int, digits: int = 4) -> str:
    m, s = cell["mean"], cell["std"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def _angles(d: dict) -> str:
    if not d or not d.get("n"):
        return "n/a"
    return (f"mean {d['mean']:.1f}°, median {d['median']:.1f}°, p90 {d['p90']:.1f}°, "
            f">45°: {100 * d['frac_gt_45']:.0f}%, >80°: {100 * d['frac_gt_80']:.0f}% (n={d['n']})")


def write(out: Path, preset_name: str, payload: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"quality-{preset_name}.json"
    md_path = out / f"quality-{preset_name}.md"
    json_path.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    table, seeds = payload["table"], payload["seeds"]
    n = len(seeds)
    lines = [f"# Quality benchmark: `{preset_name}` preset", "",
             "Written by `benchmarks/quality.py`; do not edit by hand.", "",
             f"- command: `{payload['command']}`",
             f"- started {payload['started']}, finished {payload['finished']}, "
             f"wall {payload['wall_seconds'] / 60:.1f} min",
             f"- machine: {payload['machine']}",
             f"- seeds: {n} ({', '.join(str(s['seed']) for s in seeds)}); "
             "cells are mean ± sample std over seeds" if n > 1 else
             f"- seeds: 1 ({seeds[0]['seed']}); no spread available",
             f"- ARM steps: {payload['arm_driver']}",
             ("" if payload.get("complete", True) else
              f"- **partial: {n} of {len(payload['seeds_requested'])} requested seeds finished**"),
             "",
             "Losses are mean response-token cross-entropy (lower is better); accuracies are "
             "exact match of the final number under greedy decoding. `gsm OOD` = templates "
             "never trained on (primary); `gsm ID` = train templates, unseen values "
             "(secondary); `arith` = chain_sum. `val` = the validation split (gsm problems of "
             "templates disjoint from train and test, plus chain_sum; counts in the Data "
             "section) that every hyperparameter was chosen on.", "",
             "| candidate | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, row in table.items():
        cells = [_fmt(row[k], row["n_seeds"], 3 if k.startswith("acc") else 4) for k, _ in METRICS]
        cells = [c if c != "n/a" or not k.startswith("acc") else "not run" for c, (k, _) in
                 zip(cells, METRICS)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Selected hyperparameters (per seed, chosen on validation)", ""]
    for s in seeds:
        for name, row in s["results"].items():
            sel = {k: v for k, v in row.get("selected", {}).items() if k != "val_grid"}
            if sel:
                lines.append(f"- seed {s['seed']}, {name}: `{json.dumps(sel)}`")
    lines += ["", "## Diagnostics", ""]
    for s in seeds:
        diag = s["diagnostics"].get("first_step", {})
        lines += [f"### seed {s['seed']}", "",
                  f"Principal angles at rank {payload['preset']['rank']} (per linear input):", ""]
        for key, val in diag.items():
            if key.startswith(("noise", "angles")):
                lines.append(f"- {key}: {_angles(val)}")
        lines += ["", "Cosine between a displacement and the update SFT made afterwards "
                  "(c100 - c20), over all linear weights:", "",
                  "| displacement | unrotated | rotated/mapped | other maps |", "|---|---|---|---|"]
        for key, val in diag.get("cosines_first_step", {}).items():
            extra = ", ".join(f"{k} {v:.4f}" for k, v in val.items()
                              if k not in ("unrotated", "rotated", "weights"))
            lines.append(f"| {key} | {val['unrotated']:.4f} | {val['rotated']:.4f} | {extra} |")
        for name in ("arm-stream", "arm-line-search"):
            traj = s["diagnostics"].get(name)
            if not traj:
                continue
            runs = traj.items() if isinstance(traj, dict) else [("", traj)]
            for tag, steps in runs:
                lines += ["", f"{name} {('eta0=' + tag) if tag else ''}: per step", "",
                          "| step | eta | val | angles origin→cur | cos(d, c100-cur) unrot / rot |",
                          "|---|---|---|---|---|"]
                for rec in steps[1:]:
                    dg = rec.get("diagnostics", {})
                    c = dg.get("cos_vs_c100_minus_cur", {})
                    cos_txt = (f"{c['unrotated']:.4f} / {c['rotated']:.4f}" if c else "n/a")
                    rate = rec.get("rate")
                    lines.append(f"| {rec['step']} | {'' if rate is None else f'{rate:.4g}'} | "
                                 f"{rec['val']:.4f} | {_angles(dg.get('angles_origin_to_cur'))} | "
                                 f"{cos_txt} |")
        lines.append("")
    lines += ["## Stage timings (seconds, per seed)", ""]
    for s in seeds:
        lines.append(f"- seed {s['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in s["timings"].items()))
    lines += ["", "## Data", "", f"`{json.dumps(seeds[0]['splits'])}`", "",
              "## Preset", "", f"`{json.dumps(payload['preset'])}`", ""]
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return md_path, json_path
