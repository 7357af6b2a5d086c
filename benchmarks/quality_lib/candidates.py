"""Every candidate of one seed, built from the early checkpoints only, then tested once.

Selection protocol (see ``pipeline.py``): each candidate's hyperparameters are chosen
on the validation loss; :meth:`Run.test` is the only reader of the test splits and runs
once per candidate, after its selection.

ARM candidates, all through ``merge_method: arm`` in MergeKit:

* ``arm-single``: one merge from c20, origin -> c20, the spec's settings (rank and eta
  on validation);
* ``arm-single (<variant>)``: the same merge with one remedy of the issue's list
  switched on (energy-weighted pairing, an eigengap rank, an energy cut, twice the
  calibration tokens, the latest step c10 -> c20 as the displacement); ``arm-single
  (best on val)`` is whichever of these validation prefers (no new test evaluation);
* ``arm-stream`` / ``arm-line-search``: fixed-set streams from c20 (cosine schedule, or a
  line search per step);
* ``arm-stream-checkpoints``: a stream of checkpoints from the origin, origin -> c10 ->
  c20 -> c30, each leg scaled by a constant eta (eta = 1 without rotation reproduces c30);
* ablations: the fixed stream with ``off_subspace: 0``, and (``--diagnostics``) the two
  streams with the rotation off (iterated ExPO);
* the averaging recipes and the greedy-soup / ema baselines: ``recipes.py``;
* ``early-stop`` / ``early-stop-average``: SFT stopped by its stream's patience, keeping
  the best merge / the best running average of the saves (``early_stop.py``).

``--diagnostics`` (``Preset.diagnostics``) adds the rows three seeds of the full preset
showed to be ties of another row (the arm-single variants, within 0.005 gsm OOD loss of
arm-single; the rotation-off ablations, within 0.003 of their rotated stream), so that
a default full-preset seed fits in about 1.5 h on 2 cores.
"""

from __future__ import annotations

from mergekit_arm.stream import Leg, angle_summary

from . import early_stop, merges, recipes
from .pipeline import Run
from .train import StateDict

ARM_VARIANTS = (
    # (row name, options) on top of the spec's arm-single
    ("arm-single (energy pairing)", {"pairing": "energy"}),
    ("arm-single (eigengap rank)", {"eigengap": True}),
    ("arm-single (energy cut)", {"energy": "preset"}),
    ("arm-single (2x calibration tokens)", {"tokens": 2}),
    ("arm-single (latest step c10->c20)", {"direction": "latest"}),
)

CANDIDATES = (
    "origin", "sft-10%", "sft-20%", "sft-30%", "sft-100%", "expo-20%", "expo-30%", "avg-early",
    "task-arithmetic", "model-stock", *recipes.BASELINE_EXTRAS, "arm-single",
    *(name for name, _ in ARM_VARIANTS), "arm-single (best on val)", "arm-stream",
    "arm-line-search", "arm-stream-checkpoints", "ablation-rotation0", "ablation-offsubspace0",
    "ablation-checkpoints-rotation0", *recipes.RECIPES,
)
DIAGNOSTIC_ONLY = (*(name for name, _ in ARM_VARIANTS), "arm-single (best on val)",
                   "ablation-rotation0", "ablation-checkpoints-rotation0")


def candidate_names(diagnostics: bool) -> tuple[str, ...]:
    """The rows of a run: the arm-single variants only with ``--diagnostics``."""
    return CANDIDATES if diagnostics else tuple(c for c in CANDIDATES
                                                if c not in DIAGNOSTIC_ONLY)


def _mean_displacement(leg: Leg) -> StateDict:
    """``sum_j w_j (to_j - from) / sum_j w_j`` of a leg (the kernel's ``d``)."""
    total = sum(w for _, w in leg.targets)
    return {k: sum(w * t[k] for t, w in leg.targets) / total - leg.source[k]
            for k, v in leg.source.items() if v.is_floating_point()}


def _best_stream(grid, stream) -> tuple[float, merges.StreamRun, dict[str, list]]:
    """Run ``stream(value)`` for every value of the grid; the one with the lowest validation
    loss (at its best step) wins. Returns the value, its run and every run's trajectory."""
    best, trajectories = None, {}
    for value in grid:
        res = stream(value)
        trajectories[str(value)] = res.trajectory
        if best is None or res.best_val < best[1].best_val:
            best = (value, res)
    return best[0], best[1], trajectories


def run_candidates(run: Run) -> None:
    p, ck, origin = run.preset, run.ckpt, run.origin
    c10, c20, c30, c100 = ck[0.1], ck[0.2], ck[0.3], ck[1.0]
    early = [c10, c20, c30]
    future = merges.diff(c100, c20)  # the update SFT made after the 20% checkpoint
    n = p.n_calibration

    with run.stage("baselines"):
        run.test("origin", origin)
        for f, name in ((0.1, "sft-10%"), (0.2, "sft-20%"), (0.3, "sft-30%"), (1.0, "sft-100%")):
            run.test(name, ck[f])
        for name, c in (("expo-20%", c20), ("expo-30%", c30)):
            state, sel, v = run.select(lambda alpha, c=c: merges.expo(origin, c, alpha),
                                       [{"alpha": a} for a in p.alpha_grid])
            run.test(name, state, sel, v)
        run.test("avg-early", merges.average(early))
        state, sel, v = run.select(
            lambda lam: merges.mergekit_merge("task_arithmetic", origin, early,
                                              {"weight": 1.0, "normalize": True, "lambda": lam}),
            [{"lam": x} for x in p.lambda_grid])
        run.test("task-arithmetic", state, sel, v)
        run.test("model-stock", merges.mergekit_merge("model_stock", origin, early, {}))
    recipes.run_baseline_extras(run)

    cal = run.calibrator
    texts = cal.texts
    with run.stage("calibration (origin, c10, c20, split halves, 2x tokens)"):
        s_origin = cal(origin, "origin")
        s_c10 = cal(c10, "c10")
        s_c20 = cal(c20, "c20")
        half = n // 2
        s_half_a = cal(origin, "origin-halfA", texts=texts[:half], samples=half)
        s_half_b = cal(origin, "origin-halfB", texts=texts[half:n], samples=n - half)
        s_c20_a = cal(c20, "c20-halfA", texts=texts[:half], samples=half)
        big = min(len(texts), n * max(1, p.calibration_multiplier))
        if big > n:
            s_origin_big = cal(origin, "origin-2x", texts=texts[:big], samples=big)
            s_c20_big = cal(c20, "c20-2x", texts=texts[:big], samples=big)
            s_origin_rest = cal(origin, "origin-rest", texts=texts[n:big], samples=big - n)
        else:
            s_origin_big = s_c20_big = s_origin_rest = None
        run.diagnostics["calibration_tokens"] = cal.tokens

    with run.stage("diagnostics"):
        run.diagnostics["first_step"] = first_step_diagnostics(
            run, s_origin, s_c10, s_c20, s_half_a, s_half_b, s_c20_a, s_origin_big, s_c20_big,
            s_origin_rest, future)

    def step_diag(k: int, cur: StateDict, stats, leg: Leg) -> dict:
        out: dict = {}
        if stats is not None and leg.source_statistics is not None:
            d = _mean_displacement(leg)
            out["angles_source_to_cur"] = angle_summary(leg.source_statistics, stats, rank)
            out["cos_vs_c100_minus_cur"] = merges.direction_cosines(
                d, merges.diff(c100, cur), leg.source_statistics, stats, rank)
        return out

    with run.stage("arm-single and variants"):
        single = {}
        state, sel, v = run.select(
            lambda eta, rank: merges.arm_merge(c20, origin, [], s_c20, s_origin, eta, rank),
            [{"eta": a, "rank": r} for r in p.rank_options for a in p.alpha_grid])
        run.test("arm-single", state, sel, v)
        single["arm-single"] = v
        rank = sel["rank"]  # every later ARM candidate uses the rank validation chose here
        for name, options in ARM_VARIANTS if p.diagnostics else ():
            opts = dict(options)
            cur_stats, from_stats, source = s_c20, s_origin, origin
            if opts.pop("tokens", None):
                if s_origin_big is None:
                    continue
                cur_stats, from_stats = s_c20_big, s_origin_big
            if opts.pop("direction", None) == "latest":
                from_stats, source = s_c10, c10
            if opts.get("energy") == "preset":
                opts["energy"] = p.energy_cut

            def build(eta, cur_stats=cur_stats, from_stats=from_stats, source=source, opts=opts):
                return merges.arm_merge(c20, source, [], cur_stats, from_stats, eta, rank, **opts)

            state, sel, v = run.select(build, [{"eta": a} for a in p.alpha_grid])
            run.test(name, state, sel | {"rank": rank} | opts, v)
            single[name] = v
        if p.diagnostics:
            best = min(single, key=single.get)
            run.copy_result("arm-single (best on val)", best,
                            {"variant": best, "val_by_variant": single})

    arm = merges.arm_parameters(rank)
    fixed = merges.fixed_legs(origin, s_origin, [c20], p.stream_steps)
    with run.stage("arm-stream"):
        eta0, res, trajectories = _best_stream(p.stream_eta_grid, lambda eta0: merges.stream(
            c20, fixed, cal, run.val, schedule=merges.cosine(eta0), parameters=arm,
            min_steps=p.min_stream_steps, start_stats=s_c20, diagnostics=step_diag,
            label=f"arm-stream eta0={eta0}", log=run.log))
        run.test("arm-stream", res.best_state,
                 {"eta0": eta0, "schedule": "cosine", "steps": res.best_step,
                  "max_steps": p.stream_steps}, res.best_val)
        run.diagnostics["arm-stream"] = trajectories

    with run.stage("arm-line-search"):
        # patience 1: stop at the first step whose best try does not lower the loss
        res_ls = merges.stream(
            c20, fixed, cal, run.val,
            schedule=merges.line_search(p.line_search_base, p.line_search_multipliers),
            parameters=arm, min_steps=p.min_stream_steps, patience=1, start_stats=s_c20,
            diagnostics=step_diag, label="arm-line-search", log=run.log)
        run.test("arm-line-search", res_ls.best_state,
                 {"base_rate": p.line_search_base, "multipliers": p.line_search_multipliers,
                  "steps": res_ls.best_step,
                  "rates": [t["rate"] for t in res_ls.trajectory[1:res_ls.best_step + 1]]},
                 res_ls.best_val)
        run.diagnostics["arm-line-search"] = res_ls.trajectory

    legs = merges.checkpoint_legs(origin, s_origin,
                                  [("c10", c10, s_c10), ("c20", c20, s_c20), ("c30", c30, None)])
    with run.stage("arm-stream-checkpoints"):
        eta_ck, res, trajectories = _best_stream(p.checkpoint_eta_grid, lambda eta: (
            merges.stream(origin, legs, cal, run.val, schedule=merges.constant(eta),
                          parameters=arm, min_steps=1, start_stats=s_origin,
                          diagnostics=step_diag, label=f"arm-stream-checkpoints eta={eta}",
                          log=run.log)))
        run.test("arm-stream-checkpoints", res.best_state,
                 {"eta": eta_ck, "schedule": "constant", "steps": res.best_step,
                  "legs": [leg.label for leg in legs[:res.best_step]]}, res.best_val)
        run.diagnostics["arm-stream-checkpoints"] = trajectories

    with run.stage("ablations"):
        ablations = (("ablation-rotation0", {"rotation_strength": 0.0}),
                     ("ablation-offsubspace0", {"off_subspace": 0.0}))
        for name, kwargs in ablations if p.diagnostics else ablations[1:]:
            res_ab = merges.stream(
                c20, fixed, cal, run.val, schedule=merges.cosine(eta0),
                parameters=merges.arm_parameters(rank, **kwargs),
                min_steps=p.min_stream_steps, start_stats=s_c20, label=name, log=run.log)
            run.test(name, res_ab.best_state,
                     {"eta0 (from arm-stream)": eta0, "steps": res_ab.best_step} | kwargs,
                     res_ab.best_val)
            run.diagnostics[name] = res_ab.trajectory
        if p.diagnostics:
            res_ab = merges.stream(origin, legs, cal, run.val, schedule=merges.constant(eta_ck),
                                   parameters=merges.arm_parameters(rank, rotation_strength=0.0),
                                   min_steps=1, label="ablation-checkpoints-rotation0",
                                   log=run.log)
            run.test("ablation-checkpoints-rotation0", res_ab.best_state,
                     {"eta (from arm-stream-checkpoints)": eta_ck, "steps": res_ab.best_step,
                      "rotation_strength": 0.0}, res_ab.best_val)
            run.diagnostics["ablation-checkpoints-rotation0"] = res_ab.trajectory
    recipes.run_recipes(run, rank)
    early_stop.run_early_stop(run, rank)
    run.timings["calibration passes (s)"] = cal.seconds
    run.timings["validation evals (s)"] = run.evaluator.seconds


def first_step_diagnostics(run: Run, s_origin, s_c10, s_c20, s_half_a, s_half_b, s_c20_a,
                           s_origin_big, s_c20_big, s_origin_rest, future: StateDict) -> dict:
    """Principal angles against split-half noise floors, and the cosine of each candidate
    displacement (rotated / unrotated) with the update SFT made after c20."""
    p, origin, c10, c20 = run.preset, run.origin, run.ckpt[0.1], run.ckpt[0.2]
    n = p.n_calibration
    angles, cos = {}, {}
    for r in sorted(set(p.rank_sweep) | {p.rank}):
        angles[f"noise floor (origin, two halves of {n} texts), rank {r}"] = angle_summary(
            s_half_a, s_half_b, r)
        angles[f"origin -> c20, rank {r}"] = angle_summary(s_origin, s_c20, r)
    r = p.rank
    angles[f"noise floor, eigengap rank <= {r}"] = angle_summary(
        s_half_a, s_half_b, r, eigengap=True)
    angles[f"origin -> c20, eigengap rank <= {r}"] = angle_summary(
        s_origin, s_c20, r, eigengap=True)
    angles[f"noise floor, energy {p.energy_cut} (rank <= {r})"] = angle_summary(
        s_half_a, s_half_b, r, p.energy_cut)
    angles[f"origin -> c20, energy {p.energy_cut} (rank <= {r})"] = angle_summary(
        s_origin, s_c20, r, p.energy_cut)
    angles[f"origin -> c20, {n // 2} texts, rank {r}"] = angle_summary(s_half_a, s_c20_a, r)
    if s_origin_big is not None:
        angles[f"noise floor (origin, two disjoint sets of {n} texts), rank {r}"] = (
            angle_summary(s_origin, s_origin_rest, r))
        angles[f"origin -> c20, {2 * n} texts, rank {r}"] = angle_summary(
            s_origin_big, s_c20_big, r)
    angles[f"c10 -> c20, rank {r}"] = angle_summary(s_c10, s_c20, r)

    d20 = merges.diff(c20, origin)
    for rr in sorted(set(p.rank_sweep) | {p.rank}):
        cos[f"origin->c20, rank {rr}"] = merges.direction_cosines(d20, future, s_origin, s_c20, rr)
    cos[f"origin->c20, energy pairing, rank {r}"] = merges.direction_cosines(
        d20, future, s_origin, s_c20, r, pairing="energy")
    cos[f"origin->c20, eigengap rank <= {r}"] = merges.direction_cosines(
        d20, future, s_origin, s_c20, r, eigengap=True)
    cos[f"origin->c20, energy {p.energy_cut}"] = merges.direction_cosines(
        d20, future, s_origin, s_c20, r, p.energy_cut)
    cos[f"origin->c20, {n // 2} texts"] = merges.direction_cosines(
        d20, future, s_half_a, s_c20_a, r)
    if s_origin_big is not None:
        cos[f"origin->c20, {2 * n} texts"] = merges.direction_cosines(
            d20, future, s_origin_big, s_c20_big, r)
    cos["origin->c20, off_subspace 0"] = merges.direction_cosines(
        d20, future, s_origin, s_c20, r, off_subspace=0.0)
    cos["c10->c20 (latest step)"] = merges.direction_cosines(
        merges.diff(c20, c10), future, s_c10, s_c20, r)
    for k, v in cos.items():
        run.log(f"  cos vs c100-c20, {k}: unrotated {v['unrotated']:.4f} "
                f"rotated {v['rotated']:.4f}")
    for k, v in angles.items():
        run.log(f"  angles {k}: mean {v.get('mean', float('nan')):.2f} deg, "
                f"p90 {v.get('p90', float('nan')):.2f}")
    return {"angles": angles, "cosines": cos}
