"""The report's "Early stop and guarded choice" section: where each early-stop row stopped
(the save, the fraction of SFT steps saved, the model kept) and, for the early-stop and
guarded-choice rows, paired verdicts per split against converged SFT, the best baseline
(oracle per split, on test) and ``choose-standard``. Reads finished seeds only (outside
the code fingerprint, like ``report.py``)."""

from __future__ import annotations

from .report_stats import BEST_BASELINE, RECIPE_METRICS, compare, mean_std, with_best_baseline

EARLY_STOP_ROWS = ("early-stop", "early-stop-average")
GUARDED_ROWS = ("choose-guarded", "choose-guarded-stock")
REFERENCES = ("sft-100%", BEST_BASELINE, "choose-standard")


def early_stop_summary(per_seed: list[dict], baselines: tuple[str, ...]) -> dict:
    """Per early-stop row and seed: ``stop save``, ``fraction saved``, ``kept``; per row
    (early-stop and guarded) and reference: the paired differences of every split."""
    seeds = with_best_baseline(per_seed, baselines)
    stops: dict = {}
    for row in EARLY_STOP_ROWS:
        for s in per_seed:
            selected = s["results"].get(row, {}).get("selected")
            if selected:
                stops.setdefault(row, []).append(
                    {"seed": s["seed"], "stop save": selected.get("stop save"),
                     "fraction saved": selected.get("fraction saved"),
                     "kept": selected.get("kept")})
    vs: dict = {}
    for row in (*EARLY_STOP_ROWS, *GUARDED_ROWS):
        for ref in REFERENCES:
            if row == ref:
                continue
            for key, _ in RECIPE_METRICS:
                res = compare(seeds, row, ref, key)
                if res is not None:
                    vs.setdefault(row, {}).setdefault(ref, {})[key] = res
    picks = {row: [s["results"][row]["selected"].get("picked") for s in per_seed
                   if s["results"].get(row, {}).get("selected")]
             for row in ("choose-standard", *GUARDED_ROWS)}
    return {"stops": stops, "vs": vs, "picks": picks}


def _cell(c: dict | None, key: str) -> str:
    if c is None:
        return "n/a"
    digits = 3 if key.startswith("acc") else 4
    spread = f" ± {c['std']:.{digits}f}" if c["n"] > 1 else ""
    return f"{c['mean']:+.{digits}f}{spread} {c['verdict']}"


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
                _cell(by_key.get(key), key) for key, _ in keys) + " |")
    return lines + [""]


__all__ = ["EARLY_STOP_ROWS", "GUARDED_ROWS", "early_stop_lines", "early_stop_summary"]
