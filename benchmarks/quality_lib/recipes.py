"""The averaging family as Streaming Merging, and its baselines, for one seed.

Every stream runs the product's own loop (:func:`mergekit_arm.stream.run_steps` through
:func:`merges.stream`): toward legs (``mode: toward``, ``W <- W + eta_t R(c_t - W)``),
the ``average`` schedule (``eta_t = 1/t``), ``start: average``
(:func:`mergekit_arm.stream.recipes.weighted_average`) and per-block step sizes
(``blocks``). Baselines: ``greedy-soup`` (Wortsman et al. 2022) and ``ema``.

``choose-standard`` is what ``arm-choose`` with ``standard: all`` returns, in memory: its
toward line-search stream tunes (rates and kept step) on the even half of the validation
split (arm-choose's ``tuning``), and :func:`mergekit_arm.choose.pick.lowest_loss` keeps the
lowest loss on the odd half (arm-choose's ``validation``) among c10, c20, c30, their
average, ``model_stock`` and that stream.

``choose-guarded`` is ``arm-choose`` with a guard, in memory, over the same candidates
(the same tuned stream): :func:`mergekit_arm.choose.pick.guarded_choice` keeps the lowest
loss on the second task's problems of the odd half (the primary set) among the candidates
whose loss on its gsm problems (the guard) is at most that of sft-30%, the latest
checkpoint (``max_regression: 0``, ``against`` the checkpoint a user would otherwise ship).
``choose-guarded-stock`` is the same choice with the guard against ``model-stock`` (the
strongest gsm baseline of the quick preset), to see whether a stronger reference protects.

Selection: every choice is made on the validation split; the per-block searches score on
its even-indexed half (the *selection* set) and keep/report steps on the odd half (the
stream's ``validation``), as ``arm-stream`` requires the two to differ. The test splits
are read once per candidate by :meth:`Run.test`.
"""

from __future__ import annotations

from mergekit_arm.choose.pick import Guard, guarded_choice, lowest_loss
from mergekit_arm.choose.standard import STANDARD_RECIPES
from mergekit_arm.stream.recipe_config import BlockSearchConfig
from mergekit_arm.stream.recipes import weighted_average

from . import merges
from .data import GSM
from .pipeline import Run
from .train import load_state

BASELINE_EXTRAS = ("greedy-soup", "ema")
CHOOSE_STANDARD = "choose-standard"
CHOOSE_GUARDED = "choose-guarded"
CHOOSE_GUARDED_STOCK = "choose-guarded-stock"
GUARD = Guard("gsm", 0.0, against="sft-30%")  # choose-guarded's guard
GUARD_STOCK = Guard("gsm", 0.0, against="model-stock")  # choose-guarded-stock's guard
GUARDED = ((CHOOSE_GUARDED, GUARD), (CHOOSE_GUARDED_STOCK, GUARD_STOCK))
RECIPES = ("stream-average", "stream-toward-line-search", "stream-average-blocks",
           "stream-from-average", "stream-from-average-blocks", CHOOSE_STANDARD,
           CHOOSE_GUARDED, CHOOSE_GUARDED_STOCK, "early-stop",
           "early-stop-average")  # the early-stop rows: early_stop.py
# what a new recipe must beat: the best of these per split and seed (issue 11's goal)
BASELINES = ("sft-10%", "sft-20%", "sft-30%", "avg-early", "model-stock", "greedy-soup",
             "expo-20%", "expo-30%", "ema")


def run_baseline_extras(run: Run) -> None:
    """``greedy-soup`` and ``ema`` over c10 -> c20 -> c30 (eta on validation)."""
    p, ck = run.preset, run.ckpt
    names = ("c10", "c20", "c30")
    early = [ck[0.1], ck[0.2], ck[0.3]]
    with run.stage("greedy-soup and ema"):
        soup, kept = merges.greedy_soup(early, run.val)
        run.test("greedy-soup", soup, {"ingredients": [names[i] for i in kept]})
        legs = merges.toward_legs([("c20", early[1]), ("c30", early[2])])
        best = None
        for eta in p.ema_grid:
            res = merges.stream(early[0], legs, run.calibrator, run.val,
                                schedule=merges.constant(eta), parameters=merges.arm_parameters(
                                    p.rank), min_steps=len(legs), label=f"ema eta={eta}",
                                log=run.log)
            if best is None or res.best_val < best[1].best_val:
                best = (eta, res)
        run.test("ema", best[1].best_state, {"eta": best[0], "start": "c10",
                                             "legs": [leg.label for leg in legs]},
                 best[1].best_val)


def _halves(run: Run):
    """(selection loss, validation loss) on the two halves of the validation split."""
    return (lambda state: run.val_part(state, 0)), (lambda state: run.val_part(state, 1))


def run_recipes(run: Run, rank: int) -> None:
    """The new recipes (see the module docstring); ``rank``: the ARM rank validation chose."""
    p, ck, origin = run.preset, run.ckpt, run.origin
    early = [("c10", ck[0.1]), ("c20", ck[0.2]), ("c30", ck[0.3])]
    toward = merges.toward_legs(early)
    plain = merges.arm_parameters(rank)  # a toward step needs no statistics (R = I)
    blocks = BlockSearchConfig(groups="kind", multipliers=p.block_multipliers)
    select, validate = _halves(run)
    cal = run.calibrator

    with run.stage("stream-average (toward, eta = 1/t)"):
        res = merges.stream(origin, toward, cal, run.val, schedule=merges.average_schedule(),
                            parameters=plain, min_steps=len(toward), label="stream-average",
                            log=run.log)
        run.test("stream-average", res.best_state, {"schedule": "average", "steps": 3},
                 res.best_val)
    with run.stage("stream-toward-line-search"):
        res = merges.stream(origin, toward, cal, run.val,
                            schedule=merges.average_line_search(p.toward_multipliers),
                            parameters=plain, min_steps=1, label="stream-toward-line-search",
                            log=run.log)
        run.test("stream-toward-line-search", res.best_state,
                 {"multipliers of 1/t": p.toward_multipliers, "steps": res.best_step,
                  "rates": [t["rate"] for t in res.trajectory[1:res.best_step + 1]]},
                 res.best_val)
        run.diagnostics["stream-toward-line-search"] = res.trajectory
    with run.stage("stream-average-blocks"):
        res = merges.stream(origin, toward, cal, validate, schedule=merges.average_schedule(),
                            parameters=plain, min_steps=1, blocks=blocks,
                            selection_loss=select, label="stream-average-blocks", log=run.log)
        run.test("stream-average-blocks", res.best_state, _block_selected(res))
        run.diagnostics["stream-average-blocks"] = res.trajectory

    avg = weighted_average([(state, 1.0) for _, state in early])
    with run.stage("calibration (origin)"):
        s_origin = cal(origin, "origin-recipes")
    fixed = merges.fixed_legs(origin, s_origin, [s for _, s in early], p.stream_steps)
    arm = merges.arm_parameters(rank)
    search = merges.line_search(p.line_search_base, p.line_search_multipliers)
    with run.stage("stream-from-average"):
        res = merges.stream(avg, fixed, cal, run.val, schedule=search, parameters=arm,
                            min_steps=1, patience=1, label="stream-from-average", log=run.log)
        run.test("stream-from-average", res.best_state,
                 {"start": "average", "steps": res.best_step,
                  "rates": [t["rate"] for t in res.trajectory[1:res.best_step + 1]]},
                 res.best_val)
        run.diagnostics["stream-from-average"] = res.trajectory
    with run.stage("stream-from-average-blocks"):
        res = merges.stream(avg, fixed, cal, validate, schedule=search, parameters=arm,
                            min_steps=1, patience=1, blocks=blocks, selection_loss=select,
                            label="stream-from-average-blocks", log=run.log)
        run.test("stream-from-average-blocks", res.best_state, _block_selected(res))
        run.diagnostics["stream-from-average-blocks"] = res.trajectory
    run_choose_standard(run)


def run_choose_standard(run: Run) -> None:
    """``arm-choose`` with ``standard: all`` (see the module docstring). The pick's row is
    the test row of the same model when it is another candidate's (no second test read);
    only a picked tuned stream is tested here. ``val`` is the full validation loss, as for
    every row; the choice's own loss is in ``selected``."""
    assert STANDARD_RECIPES == ("checkpoints", "average", "model-stock", "toward-line-search")
    p, ck, origin = run.preset, run.ckpt, run.origin
    early = [("c10", ck[0.1]), ("c20", ck[0.2]), ("c30", ck[0.3])]
    tuning, choice = _halves(run)
    with run.stage(CHOOSE_STANDARD):
        tuned = merges.stream(origin, merges.toward_legs(early), run.calibrator, tuning,
                              schedule=merges.average_line_search(p.toward_multipliers),
                              parameters=merges.arm_parameters(p.rank), min_steps=0,
                              label="toward-line-search (tuned on the even half)", log=run.log)
        states = [state for _, state in early]
        menu = {"sft-10%": states[0], "sft-20%": states[1], "sft-30%": states[2],
                "avg-early": merges.average(states),
                "model-stock": merges.mergekit_merge("model_stock", origin, states, {}),
                "toward-line-search (tuned on the even half)": tuned.best_state}
        losses = {name: choice(state) for name, state in menu.items()}
        picked = lowest_loss(losses)
        selected = {"picked": picked, "choice losses (odd half)": losses,
                    "stream steps": tuned.best_step,
                    "stream rates": [t["rate"] for t in tuned.trajectory[1:tuned.best_step + 1]]}
        if picked in run.results:
            run.copy_result(CHOOSE_STANDARD, picked, selected)
        else:
            run.test(CHOOSE_STANDARD, menu[picked], selected)
        run.diagnostics[CHOOSE_STANDARD] = tuned.trajectory
    with run.stage(CHOOSE_GUARDED):
        losses = {name: _task_and_gsm_losses(run, state) for name, state in menu.items()}
        for name, guard in GUARDED:
            run_choose_guarded(run, menu, losses, name, guard)


def _task_and_gsm_losses(run: Run, state) -> tuple[float, float]:
    """Losses on the second task's and on gsm's problems of the odd half of validation."""
    odd = run.splits.val[1::2]
    load_state(run.model, state)
    return (run.evaluator.loss([e for e in odd if e.task != GSM]),
            run.evaluator.loss([e for e in odd if e.task == GSM]))


def run_choose_guarded(run: Run, menu: dict, losses: dict[str, tuple[float, float]],
                       name: str = CHOOSE_GUARDED, guard_spec: Guard = GUARD) -> None:
    """``choose-guarded`` or ``choose-guarded-stock`` (see the module docstring) over
    ``menu``, choose-standard's candidates, with ``losses`` = their (task, gsm) losses on
    the odd half (after choose-standard's row: a tuned stream it picked is tested there)."""
    primary = {cand: task for cand, (task, _) in losses.items()}
    guard = {cand: gsm for cand, (_, gsm) in losses.items()}
    choice = guarded_choice(primary, {guard_spec.name: guard}, [guard_spec])
    picked = choice.chosen or choice.closest
    selected = {"picked": picked, "primary: task2 losses (odd half)": primary,
                "guard: gsm losses (odd half)": guard, "guard": guard_spec.describe(
                    choice.references[guard_spec.name]),
                "limit": choice.limits[guard_spec.name],
                "excluded": choice.excluded, "none within the guard": choice.chosen is None}
    source = picked if picked in run.results else next(
        (row for row in (CHOOSE_STANDARD, CHOOSE_GUARDED) if row in run.results
         and run.results[row]["selected"].get("picked") == picked), None)
    if source is not None:
        run.copy_result(name, source, selected)
    else:
        run.test(name, menu[picked], selected)


def _block_selected(res: merges.StreamRun) -> dict:
    return {"steps": res.best_step, "val (odd half, keeps the step)": res.best_val,
            "rates": [t["rate"] for t in res.trajectory[1:res.best_step + 1]],
            "block_rates": [t.get("block_rates") for t in res.trajectory[1:res.best_step + 1]],
            "selection": "even half of the validation split"}


__all__ = ["BASELINES", "BASELINE_EXTRAS", "CHOOSE_GUARDED", "CHOOSE_GUARDED_STOCK",
           "CHOOSE_STANDARD", "GUARD", "GUARD_STOCK",
           "RECIPES", "run_baseline_extras", "run_choose_guarded", "run_choose_standard",
           "run_recipes"]
