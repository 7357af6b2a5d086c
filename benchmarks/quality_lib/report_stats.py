"""Paired statistics over finished seeds (no formatting): means, paired differences and
their verdicts, the best baseline per split, and the candidate kept on validation (by
``arm-choose``'s own rule, :func:`mergekit_arm.choose.pick.lowest_loss`). Like ``report.py``
it reads only finished results, so it is outside the code fingerprint."""

from __future__ import annotations

import math

from mergekit_arm.choose.pick import lowest_loss

# (key, label); "{task2}" is replaced by the second task's name
METRICS = (("val", "val loss"), ("loss_gsm_ood", "gsm OOD loss"), ("loss_gsm_id", "gsm ID loss"),
           ("loss_task2", "{task2} loss"), ("acc_gsm_ood", "gsm OOD acc"),
           ("acc_task2", "{task2} acc"))
# Where-ARM-stands comparisons: the metrics (lower is better unless acc) and references
VERDICT_METRICS = (("loss_gsm_ood", "gsm OOD loss"), ("loss_task2", "{task2} loss"),
                   ("acc_task2", "{task2} acc"))
REFERENCES = ("sft-100%", "sft-20%", "expo-20%", "avg-early")


def mean_std(values: list[float | None]) -> tuple[float, float]:
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
        table[name] = {key: dict(zip(("mean", "std"), mean_std([r.get(key) for r in rows])))
                       for key, _ in METRICS}
        table[name]["n_seeds"] = len(rows)
    return table


def compare(per_seed: list[dict], candidate: str, reference: str, key: str) -> dict | None:
    """Paired difference ``candidate - reference`` over the seeds that have both, and a
    verdict: a win/loss needs the same sign in every seed and a mean beyond one sample std
    of the per-seed differences (with one seed: the sign only, flagged as such)."""
    diffs = []
    for s in per_seed:
        a, b = s["results"].get(candidate, {}).get(key), s["results"].get(reference, {}).get(key)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            diffs.append(a - b)
    if not diffs:
        return None
    m, sd = mean_std(diffs)
    better = (lambda x: x > 0) if key.startswith("acc") else (lambda x: x < 0)
    tol = 1e-9 if key.startswith("acc") else 5e-4
    if all(abs(x) <= tol for x in diffs):
        verdict = "tie"
    elif all(better(x) for x in diffs) and (len(diffs) == 1 or abs(m) > sd):
        verdict = "wins"
    elif all(better(-x) for x in diffs) and (len(diffs) == 1 or abs(m) > sd):
        verdict = "loses"
    else:
        verdict = "tie"
    return {"mean": m, "std": sd, "n": len(diffs), "verdict": verdict}


BEST_BASELINE = "best baseline"
# the splits a new recipe is compared on against the best baseline
RECIPE_METRICS = tuple(m for m in METRICS if m[0] != "val")


def with_best_baseline(per_seed: list[dict], baselines: tuple[str, ...]) -> list[dict]:
    """Copies of the seeds with a ``best baseline`` row: per seed and split, the best
    value (lowest loss, highest accuracy) among ``baselines``, read off the test split
    itself, so the reference is at least as strong as any baseline chosen on validation."""
    out = []
    for s in per_seed:
        row: dict = {"which": {}}
        for key, _ in RECIPE_METRICS:
            values = [(s["results"][b].get(key), b) for b in baselines
                      if b in s["results"] and s["results"][b].get(key) is not None
                      and math.isfinite(s["results"][b][key])]
            if values:
                pick = max(values) if key.startswith("acc") else min(values)
                row[key], row["which"][key] = pick
        out.append(s | {"results": s["results"] | {BEST_BASELINE: row}})
    return out


def recipe_verdicts(per_seed: list[dict], recipes: tuple[str, ...],
                    baselines: tuple[str, ...]) -> dict:
    """Every recipe against the best baseline, per split, paired over seeds."""
    seeds = with_best_baseline(per_seed, baselines)
    out: dict = {"which": [s["results"][BEST_BASELINE]["which"] for s in seeds]}
    for cand in recipes:
        for key, _ in RECIPE_METRICS:
            res = compare(seeds, cand, BEST_BASELINE, key)
            if res is not None:
                out.setdefault(cand, {})[key] = res
    return out


VAL_PICK_BASELINES = "val-pick (baselines)"
VAL_PICK_ALL = "val-pick (all early)"
# never in a pick: converged SFT is what the user does not have; ablations are diagnostics;
# choose-standard is itself a pick (arm-choose's)
NOT_PICKABLE = ("sft-100%", "choose-standard", "choose-guarded", "choose-guarded-stock",
                "early-stop", "early-stop-average")


def validation_picks(per_seed: list[dict], candidates: tuple[str, ...],
                     baselines: tuple[str, ...]) -> list[dict]:
    """What a user gets by keeping, per seed, the candidate with the lowest validation loss:
    among ``baselines`` only, and among every candidate built from the early checkpoints
    (``candidates`` less converged SFT and the ablations). Returns copies of the seeds with
    two rows added, ``VAL_PICK_BASELINES`` and ``VAL_PICK_ALL``: the picked candidate's
    test values (each test split read once, for the pick), and ``picked``: its name."""
    pools = {VAL_PICK_BASELINES: baselines,
             VAL_PICK_ALL: tuple(c for c in candidates
                                 if c not in NOT_PICKABLE and not c.startswith("ablation"))}
    out = []
    for s in per_seed:
        rows = {}
        for label, pool in pools.items():
            picked = lowest_loss({c: s["results"][c].get("val") for c in pool
                                  if c in s["results"]})
            if picked is not None:
                rows[label] = s["results"][picked] | {"picked": picked}
        out.append(s | {"results": s["results"] | rows})
    return out


def pick_summary(per_seed: list[dict], candidates: tuple[str, ...],
                 baselines: tuple[str, ...]) -> dict:
    """The two validation picks per seed, and paired verdicts of each against the best
    baseline (oracle, on test) and of the full pick against the baselines-only pick."""
    seeds = with_best_baseline(validation_picks(per_seed, candidates, baselines), baselines)
    out: dict = {"picked": [{label: s["results"][label]["picked"]
                             for label in (VAL_PICK_BASELINES, VAL_PICK_ALL)
                             if label in s["results"]} for s in seeds],
                 "table": aggregate(seeds, (VAL_PICK_BASELINES, VAL_PICK_ALL)), "vs": {}}
    for cand, ref in ((VAL_PICK_BASELINES, BEST_BASELINE), (VAL_PICK_ALL, BEST_BASELINE),
                      (VAL_PICK_ALL, VAL_PICK_BASELINES)):
        for key, _ in RECIPE_METRICS:
            res = compare(seeds, cand, ref, key)
            if res is not None:
                out["vs"].setdefault(f"{cand} vs {ref}", {})[key] = res
    return out


def verdicts(per_seed: list[dict], candidates: tuple[str, ...]) -> dict:
    out = {}
    for cand in (c for c in candidates if c.startswith(("arm", "stream-", "early-stop"))):
        for ref in REFERENCES:
            for key, _ in VERDICT_METRICS:
                res = compare(per_seed, cand, ref, key)
                if res is not None:
                    out.setdefault(cand, {}).setdefault(ref, {})[key] = res
    return out


EARLY_STOP_ROWS = ("early-stop", "early-stop-average")
GUARDED_ROWS = ("choose-guarded", "choose-guarded-stock")
EARLY_STOP_REFERENCES = ("sft-100%", BEST_BASELINE, "choose-standard")


def early_stop_summary(per_seed: list[dict], baselines: tuple[str, ...]) -> dict:
    """The numbers of the report's "Early stop and guarded choice" section: per early-stop
    row and seed ``stop save``, ``fraction saved``, ``kept``; per row (early-stop and
    guarded) and reference, the paired differences of every split; the picks per seed."""
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
        for ref in EARLY_STOP_REFERENCES:
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
