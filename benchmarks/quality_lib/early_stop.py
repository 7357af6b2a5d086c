"""``early-stop`` and ``early-stop-average``: the benchmark's SFT once more, stopped when
merging stops helping.

What ``ARMCallback(config, stop_training=True)`` does inside a Trainer, on the benchmark's
own SFT loop: the SFT saves a checkpoint every 10% of its steps; the callback's stream
(mode ``watch``: step k goes ``c_{k-1} -> c_k``, the origin -> ``c_1`` first; ARM with
the line search of ``examples/arm-callback.yml``, rates 1.0 / 1.5 / 2.0; ``select: best``;
``patience: 2``) takes each save in order, scored on the benchmark's validation split; the
run stops at the save where patience runs out and the kept (best) merge is the row.

``early-stop-average`` is the same callback with ``examples/arm-callback-average.yml``'s
stream over the same saves: ``watch.legs: toward`` with ``schedule: {kind: average}``
(step k moves the current model toward ``c_k`` by ``1/k``, so it is the running mean of
the saves; the rotation is off for a toward step at ``off_subspace: 1``, so no save is
calibrated), ``select: best``, ``patience: 2``: it stops when the average of the saves
stops improving on validation and keeps the best average.

The stream reads the saves lazily through :func:`mergekit_arm.stream.run_steps`: a save
after the stop is never calibrated or merged. The SFT loop itself runs to its end (the
quality benchmark's ``sft`` has no stop hook), which changes nothing measured: its cosine
schedule is fixed by the steps asked, so the checkpoints up to the stop are those of a
run stopped there, and the stream never reads a later one. ``steps trained`` is the stop
save's step, ``fraction saved`` ``1 - trained / asked`` (optimizer steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from mergekit_arm.stream import Leg, run_steps

from . import merges
from .pipeline import Run
from .train import load_state, sft

EARLY_STOP = "early-stop"
EARLY_STOP_AVERAGE = "early-stop-average"
SAVES = tuple(round(0.1 * k, 1) for k in range(1, 11))  # every 10% of the SFT steps
PATIENCE = 2
RATES = (1.0, 1.5, 2.0)  # examples/arm-callback.yml's line search


def run_early_stop(run: Run, rank: int) -> None:
    """The ``early-stop`` and ``early-stop-average`` rows (see the module docstring), both
    over one SFT run's saves; ``rank``: the ARM rank."""
    p = run.preset
    with run.stage("early-stop SFT (saves every 10%)"):
        load_state(run.model, run.origin)
        saved, _ = sft(run.model, run.tokenizer, run.splits.train, epochs=p.epochs,
                       batch_size=p.batch_size, learning_rate=p.learning_rate,
                       warmup_fraction=p.warmup_fraction, max_length=p.max_length,
                       save_fractions=SAVES, seed=run.seed, bf16=p.bf16, log=lambda _: None)
    asked = math.ceil(len(run.splits.train) / p.batch_size) * p.epochs
    cal = run.calibrator
    read: list[str] = []

    def legs() -> Iterator[Leg]:
        prev, prev_stats, prev_name = run.origin, cal(run.origin, "early-stop-origin"), "origin"
        for fraction in SAVES:
            name = f"c{round(fraction * 100)}"
            read.append(name)
            yield Leg(prev, prev_stats, ((saved[fraction], 1.0),), f"{prev_name}->{name}")
            prev, prev_stats, prev_name = (saved[fraction], cal(saved[fraction],
                                           f"early-stop-{name}"), name)

    with run.stage(EARLY_STOP):
        merges._register()
        start = run.val(run.origin)
        trace = run_steps(
            run.origin, legs(), schedule=merges.line_search(1.0, list(RATES)),
            total=len(SAVES), parameters=merges.arm_parameters(rank),
            statistics=lambda step, current: cal(current, f"early-stop-step{step - 1}"),
            score=run.val, start_loss=start, select="best", patience=PATIENCE,
            keep_weights=True)
        _report(run, EARLY_STOP, trace, read, asked, start, {"rates": list(RATES)})

    read_average: list[str] = []

    def toward_legs() -> Iterator[Leg]:
        for fraction in SAVES:
            name = f"c{round(fraction * 100)}"
            read_average.append(name)
            yield Leg(None, None, ((saved[fraction], 1.0),), f"current->{name}")

    with run.stage(EARLY_STOP_AVERAGE):
        trace = run_steps(
            run.origin, toward_legs(), schedule=merges.average_schedule(),
            total=len(SAVES), parameters=merges.arm_parameters(rank),
            statistics=lambda step, current: None, score=run.val, start_loss=start,
            select="best", patience=PATIENCE, keep_weights=True)
        _report(run, EARLY_STOP_AVERAGE, trace, read_average, asked, start,
                {"schedule": "average (eta_k = 1/k): the running mean of the saves"})


def _report(run: Run, name: str, trace, read: list[str], asked: int, start: float,
            extra: dict) -> None:
    """Test the kept model of an early-stop stream and record where it stopped."""
    stopped = trace.stop_reason is not None and not trace.failed
    at = SAVES[len(trace.records) - 1] if trace.records else SAVES[-1]
    trained = max(1, round(at * asked)) if stopped else asked
    kept = "origin" if trace.kept_step == 0 else read[trace.kept_step - 1]
    if name == EARLY_STOP_AVERAGE and trace.kept_step:
        kept = f"mean(c10..{kept})"
    selected = {
        "stopped": stopped, "stop save": f"c{round(at * 100)}" if stopped else None,
        "steps trained": trained, "steps asked": asked,
        "fraction saved": round(1 - trained / asked, 4), "kept step": trace.kept_step,
        "kept": kept, "saves read": read, "patience": PATIENCE, **extra,
        "val per step": [start] + [r["val_loss"] for r in trace.records],
        "learning rates": [r["learning_rate"] for r in trace.records]}
    where = f"stopped at {selected['stop save']}" if stopped else "never stopped"
    run.log(f"[seed {run.seed}] {name}: {where}, {trained}/{asked} SFT steps, kept {kept}")
    run.test(name, trace.kept_weights, selected, trace.kept_loss)
    run.diagnostics[name] = selected


__all__ = ["EARLY_STOP", "EARLY_STOP_AVERAGE", "PATIENCE", "SAVES", "run_early_stop"]
