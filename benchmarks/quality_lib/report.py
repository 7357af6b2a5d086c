"""Aggregate seeds and write the markdown + JSON results (never typed by hand)."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

from mergekit_arm._io import write_text_atomic

from .report_stats import (
    METRICS,
    RECIPE_METRICS,
    REFERENCES,
    VAL_PICK_ALL,
    VAL_PICK_BASELINES,
    VERDICT_METRICS,
    aggregate,
    early_stop_summary,
    mean_std,
    pick_summary,
    recipe_verdicts,
    verdicts,
)

__all__ = ["aggregate", "machine", "main_table", "seed_minutes", "update_readme", "write"]


def seed_minutes(seed_result: dict) -> float:
    """Minutes one seed computed: the sum of its stage timings (``test`` and the keys ending
    in ``(s)`` are totals across stages, so they are left out)."""
    return sum(v for k, v in seed_result["timings"].items()
               if k != "test" and not k.endswith("(s)")) / 60


def _diff_cell(c: dict | None, key: str) -> str:
    """One paired difference as a table cell: ``+mean ± std verdict`` (no std for one seed)."""
    if c is None:
        return "n/a"
    digits = 3 if key.startswith("acc") else 4
    spread = f" ± {c['std']:.{digits}f}" if c["n"] > 1 else ""
    return f"{c['mean']:+.{digits}f}{spread} {c['verdict']}"


def _recipe_lines(payload: dict, task2: str) -> list[str]:
    rv = payload.get("recipe_verdicts")
    if not rv:
        return []
    keys = [(k, label.format(task2=task2)) for k, label in RECIPE_METRICS]
    lines = ["## New recipes vs the best baseline", "",
             "Difference recipe − best baseline, paired over seeds (mean ± sample std; "
             "**wins**/**loses** as above). The best baseline is, per seed and split, the best "
             f"test value among {', '.join(payload.get('baselines', []))} (an oracle pick on "
             "the test split, so a stricter reference than any validation choice).", "",
             "| recipe | " + " | ".join(label for _, label in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for cand in payload.get("recipes", []):
        lines.append(f"| {cand} | " + " | ".join(
            _diff_cell(rv.get(cand, {}).get(key), key) for key, _ in keys) + " |")
    lines += ["", "Best baseline per seed: " + "; ".join(
        f"seed {s['seed']}: " + ", ".join(f"{k} {v}" for k, v in which.items())
        for s, which in zip(payload["seeds"], rv["which"])), ""]
    return lines


def _pick_lines(payload: dict, task2: str) -> list[str]:
    picks = payload.get("validation_picks")
    if not picks:
        return []
    keys = [(k, label.format(task2=task2)) for k, label in RECIPE_METRICS]
    lines = ["## Chosen on validation", "",
             f"What a user gets by keeping the candidate with the lowest `val` loss: "
             f"`{VAL_PICK_BASELINES}` picks among the baselines above, `{VAL_PICK_ALL}` among "
             "every candidate built from the early checkpoints (the baselines, ARM and the new "
             "recipes; not converged SFT, not the ablations). Only the picked candidate's test "
             "values are read. Caveat: the recipes' own choices (line-search rates, the kept "
             "step) were made on the same validation split, so their `val` is optimistic and "
             "the pick leans toward them.", "",
             "| seed | " + " | ".join(f"`{label}` picks" for label in
                                      (VAL_PICK_BASELINES, VAL_PICK_ALL)) + " |", "|---|---|---|"]
    for s, picked in zip(payload["seeds"], picks["picked"]):
        lines.append(f"| {s['seed']} | " + " | ".join(
            picked.get(label, "n/a") for label in (VAL_PICK_BASELINES, VAL_PICK_ALL)) + " |")
    one = payload | {"table": picks["table"]}
    lines += ["", *main_table(one), "", "Paired over seeds (difference, as above):", "",
              "| comparison | " + " | ".join(label for _, label in keys) + " |",
              "|---|" + "---|" * len(keys)]
    for name, by_key in picks["vs"].items():
        lines.append(f"| {name} | " + " | ".join(
            _diff_cell(by_key.get(key), key) for key, _ in keys) + " |")
    return lines + [""]


def machine() -> dict:
    import torch
    import transformers

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    info["avx512_bf16"] = "avx512_bf16" in line.split()
                    break
    except OSError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _fmt(cell: dict, n: int, digits: int = 4) -> str:
    m, s = cell["mean"], cell["std"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def _angles(d: dict | None) -> str:
    if not d or not d.get("n"):
        return "n/a"
    return (f"mean {d['mean']:.1f}°, median {d['median']:.1f}°, p90 {d['p90']:.1f}°, "
            f">45°: {100 * d['frac_gt_45']:.0f}%, >80°: {100 * d['frac_gt_80']:.0f}% (n={d['n']})")


def _stream_tables(name: str, traj) -> list[str]:
    lines: list[str] = []
    runs = traj.items() if isinstance(traj, dict) else [("", traj)]
    for tag, steps in runs:
        lines += ["", f"{name} {('eta=' + tag) if tag else ''}: per step", "",
                  "| step | leg | eta | val | angles from→cur | cos(d, c100-cur) unrot / rot |",
                  "|---|---|---|---|---|---|"]
        for rec in steps[1:]:
            dg = rec.get("diagnostics", {})
            c = dg.get("cos_vs_c100_minus_cur", {})
            cos_txt = f"{c['unrotated']:.4f} / {c['rotated']:.4f}" if c else "n/a"
            rate = rec.get("rate")
            blocks = rec.get("block_rates")
            leg = rec.get("leg", "") + (" (per block: " + ", ".join(
                f"{g} {r:.3g}" for g, r in blocks.items()) + ")" if blocks else "")
            lines.append(f"| {rec['step']} | {leg} | "
                         f"{'' if rate is None else f'{rate:.4g}'} | {rec['val']:.4f} | "
                         f"{_angles(dg.get('angles_source_to_cur'))} | {cos_txt} |")
    return lines


def early_stop_lines(payload: dict, task2: str) -> list[str]:
    """The section's Markdown (empty when no seed has these rows)."""
    summary = payload.get("early_stop")
    if not summary or not (summary["stops"] or summary["vs"]):
        return []
    keys = [(k, label.format(task2=task2)) for k, label in RECIPE_METRICS]
    lines = ["## Early stop and guarded choice", "",
             "`early-stop`: the SFT run stopped by `ARMCallback(stop_training=True)`'s "
             "patience, keeping the best merge of the saves (watch legs, ARM line search); "
             "`early-stop-average`: the same with `watch.legs: toward` and `schedule: "
             "{kind: average}`, keeping the best running mean of the saves "
             "(`early_stop.py`). `fraction saved` = 1 - steps trained / steps asked.", ""]
    if summary["stops"]:
        lines += ["| row | seed | stopped at | fraction of SFT steps saved | kept |",
                  "|---|---|---|---|---|"]
        for row, per_seed in summary["stops"].items():
            for s in per_seed:
                lines.append(f"| {row} | {s['seed']} | {s['stop save'] or 'never stopped'} | "
                             f"{s['fraction saved']:.2f} | {s['kept']} |")
            mean, std = mean_std([s["fraction saved"] for s in per_seed])
            lines.append(f"| {row} | mean | | {mean:.2f} ± {std:.2f} | |")
        lines.append("")
    picks = {row: names for row, names in summary.get("picks", {}).items() if names}
    if picks:
        lines += ["Picks per seed: " + "; ".join(
            f"{row}: {', '.join(names)}" for row, names in picks.items()), ""]
    lines += ["Paired over seeds (row − reference; mean ± sample std; **wins**/**loses** "
              "as above):", "",
              "| row | vs | " + " | ".join(label for _, label in keys) + " |",
              "|---|---|" + "---|" * len(keys)]
    for row, by_ref in summary["vs"].items():
        for ref, by_key in by_ref.items():
            lines.append(f"| {row} | {ref} | " + " | ".join(
                _diff_cell(by_key.get(key), key) for key, _ in keys) + " |")
    return lines + [""]


def _verdict_lines(payload: dict, task2: str) -> list[str]:
    n = len(payload["seeds"])
    spread = ("paired over seeds: mean ± sample std of the per-seed difference; **wins** or "
              "**loses** needs the same sign in every seed and |mean| > std, else **tie**"
              if n > 1 else
              "one seed: no spread, so every wins/loses below is a single sample (the quick "
              "preset's seed spread is the only noise estimate)")
    lines = ["## Where ARM stands", "",
             f"Difference candidate − reference; for losses negative is better, for accuracy "
             f"positive is better; {spread}.", ""]
    refs = [r for r in REFERENCES if any(r in v for v in payload["verdicts"].values())]
    for key, label in VERDICT_METRICS:
        lines += [f"**{label.format(task2=task2)}**", "",
                  "| ARM candidate | " + " | ".join(f"vs {r}" for r in refs) + " |",
                  "|---|" + "---|" * len(refs)]
        for cand, by_ref in payload["verdicts"].items():
            lines.append(f"| {cand} | " + " | ".join(
                _diff_cell(by_ref.get(ref, {}).get(key), key) for ref in refs) + " |")
        lines.append("")
    return lines


def main_table(payload: dict) -> list[str]:
    """The candidates x metrics table (markdown lines) of a results payload."""
    task2 = payload["preset"].get("task2", "task2")
    lines = ["| candidate | " + " | ".join(label.format(task2=task2) for _, label in METRICS)
             + " |", "|---|" + "---|" * len(METRICS)]
    for name, row in payload["table"].items():
        cells = [_fmt(row[k], row["n_seeds"], 3 if k.startswith("acc") else 4) for k, _ in METRICS]
        cells = [c if c != "n/a" or not k.startswith("acc") else "not run" for c, (k, _) in
                 zip(cells, METRICS)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def readme_markers(name: str) -> tuple[str, str]:
    return (f"<!-- quality-table:{name}:start (written by benchmarks/quality.py --readme) -->",
            f"<!-- quality-table:{name}:end -->")


def update_readme(readme: Path, name: str, payload: dict, results_md: Path) -> None:
    """Replace the block between the README's markers for ``name`` with the latest table."""
    start, end = readme_markers(name)
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block to update")
    n = len(payload["seeds"])
    seeds = ", ".join(str(s["seed"]) for s in payload["seeds"])
    block = [start, "",
             f"`{payload['command']}` ({n} seed{'s' if n > 1 else ''}: {seeds}; "
             + ("mean ± sample std over seeds" if n > 1 else "no spread") + f"; code "
             f"`{payload.get('code_fingerprint', '?')}`; full results: "
             f"[{results_md.as_posix()}]({results_md.as_posix()}))", "",
             *main_table(payload), "", end]
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    write_text_atomic(readme, head + "\n".join(block) + tail)


def peak_memory_line(seeds: list[dict]) -> str:
    """The results file's line of each seed's peak resident memory."""
    return ("- peak resident memory of the process by the end of each seed (VmHWM; heap "
            "trimmed every N s where set): " + ", ".join(
                f"seed {s['seed']} " + (f"{s['peak_rss_gib']:.1f} GiB" if s.get("peak_rss_gib")
                                        else "not recorded")
                + (f" (trim {s['heap_trim_s']:g} s)" if s.get("heap_trim_s") else "")
                + (f" (after {s['seeds_before_in_process']} other seed(s) in the process)"
                   if s.get("seeds_before_in_process") else "") for s in seeds))


def write(out: Path, preset_name: str, payload: dict) -> tuple[Path, Path]:
    """Write ``quality-<preset>.json`` and ``.md`` atomically (temp file, then rename)."""
    out.mkdir(parents=True, exist_ok=True)
    task2 = payload["preset"].get("task2", "task2")
    payload = payload | {"verdicts": verdicts(payload["seeds"], tuple(payload["candidates"]))}
    if payload.get("recipes"):
        payload["recipe_verdicts"] = recipe_verdicts(
            payload["seeds"], tuple(payload["recipes"]), tuple(payload["baselines"]))
        payload["validation_picks"] = pick_summary(
            payload["seeds"], tuple(payload["candidates"]), tuple(payload["baselines"]))
        payload["early_stop"] = early_stop_summary(payload["seeds"],
                                                   tuple(payload["baselines"]))
    json_path = out / f"quality-{preset_name}.json"
    md_path = out / f"quality-{preset_name}.md"
    seeds = payload["seeds"]
    n = len(seeds)
    lines = [f"# Quality benchmark: `{preset_name}` preset", "",
             "Written by `benchmarks/quality.py`; do not edit by hand.", "",
             f"- command: `{payload['command']}`",
             f"- started {payload['started']}, finished {payload['finished']}, "
             f"wall {payload['wall_seconds'] / 60:.1f} min"
             + (f" (seeds reused from earlier runs of the same code and preset: "
                f"{payload['reused_seeds']})" if payload.get("reused_seeds") else ""),
             "- compute per seed (sum of its stages, SFT included unless reused from the "
             "cache): " + ", ".join(f"seed {s['seed']} {seed_minutes(s):.1f} min" for s in seeds),
             *([peak_memory_line(seeds)] if any(s.get("peak_rss_gib") for s in seeds) else []),
             f"- machine: {payload['machine']}",
             *([f"- model device: `{payload['device']}` (training and evaluation; merges on "
                "the CPU)"] if payload.get("device", "cpu") != "cpu" else []),
             (f"- seeds: {n} ({', '.join(str(s['seed']) for s in seeds)}); "
              "cells are mean ± sample std over seeds" if n > 1 else
              f"- seeds: 1 ({seeds[0]['seed']}); no spread available"),
             f"- second task: `{task2}` {json.dumps(payload['preset'].get('task2_config', {}))}; "
             f"data seed {payload['preset'].get('data_seed', 0)}",
             f"- ARM steps: {payload['arm_driver']}",
             f"- code fingerprint: `{payload.get('code_fingerprint', '?')}`" + (
                 f" (the finished seeds of that code, aggregated by code "
                 f"`{payload['reported_by_code']}` with `--records-of`)"
                 if payload.get("reported_by_code") not in (None, payload.get("code_fingerprint"))
                 else ""),
             ("" if payload.get("complete", True) else
              f"- **partial: {n} of {len(payload['seeds_requested'])} requested seeds finished**"),
             "",
             "Losses are mean response-token cross-entropy (lower is better); accuracies are "
             "exact match under greedy decoding, scored by reasoning-gym's own scorer. `gsm OOD` "
             "= gsm_symbolic templates never trained on (primary); `gsm ID` = train templates, "
             f"unseen values (secondary); `{task2}` = the second task. `val` = the validation "
             "split (gsm problems of templates disjoint from train and test, plus the second "
             "task; counts in the Data section) that every hyperparameter was chosen on.", "",
             *main_table(payload)]
    lines += ([""] + _recipe_lines(payload, task2) + _pick_lines(payload, task2)
              + early_stop_lines(payload, task2) + _verdict_lines(payload, task2))
    if n > 1:
        lines += ["## Per-seed results", "",
                  "The same table for each seed alone (a run of one seed, e.g. the default "
                  "`--full --seeds 0`, is compared with its row set here).", ""]
        for s in seeds:
            one = payload | {"table": aggregate([s], tuple(payload["candidates"]))}
            lines += [f"### seed {s['seed']}", "", *main_table(one), ""]
    lines += ["## Selected hyperparameters (per seed, chosen on validation)", ""]
    for s in seeds:
        for name, row in s["results"].items():
            sel = {k: v for k, v in row.get("selected", {}).items() if k != "val_grid"}
            if sel:
                lines.append(f"- seed {s['seed']}, {name}: `{json.dumps(sel)}`")
    lines += ["", "## Diagnostics", ""]
    for s in seeds:
        diag = s["diagnostics"].get("first_step", {})
        lines += [f"### seed {s['seed']}", "",
                  "Calibration tokens per statistics file: "
                  f"`{json.dumps(s['diagnostics'].get('calibration_tokens', {}))}`", "",
                  "Principal angles between activation subspaces (per linear input), next to "
                  "split-half noise floors (the same model on disjoint calibration texts):", ""]
        for key, val in diag.get("angles", {}).items():
            lines.append(f"- {key}: {_angles(val)}")
        lines += ["", "Cosine, over all linear weights, between a displacement (unrotated, and "
                  "as ARM rotates it) and the update SFT actually made afterwards (c100 - c20):",
                  "", "| displacement, settings | unrotated | rotated |", "|---|---|---|"]
        for key, val in diag.get("cosines", {}).items():
            lines.append(f"| {key} | {val['unrotated']:.4f} | {val['rotated']:.4f} |")
        for name in ("arm-stream", "arm-line-search", "arm-stream-checkpoints",
                     "stream-toward-line-search", "stream-average-blocks",
                     "stream-from-average", "stream-from-average-blocks"):
            traj = s["diagnostics"].get(name)
            if traj:
                lines += _stream_tables(name, traj)
        lines.append("")
    lines += ["## Stage timings (seconds, per seed)", ""]
    for s in seeds:
        lines.append(f"- seed {s['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in s["timings"].items()))
    lines += ["", "## Data", "", f"`{json.dumps(seeds[0]['splits'])}`", "",
              "## Preset", "", f"`{json.dumps(payload['preset'])}`", ""]
    for path, text in ((json_path, json.dumps(payload, indent=1, default=str)),
                       (md_path, "\n".join(lines))):
        write_text_atomic(path, text)
    return md_path, json_path
