"""``early-stop``: the benchmark's SFT once more, stopped when merging stops helping.

What ``ARMCallback(config, stop_training=True)`` does inside a Trainer, on the benchmark's
own SFT loop: the SFT saves a checkpoint every 10% of its steps; the callback's stream
(mode ``watch``: step k goes ``c_{k-1} -> c_k``, the origin -> ``c_1`` first; ARM with
the line search of ``examples/arm-callback.yml``, rates 1.0 / 1.5 / 2.0; ``select: best``;
``patience: 2``) takes each save in order, scored on the benchmark's validation split; the
run stops at the save where patience runs out and the kept (best) merge is the row.

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
SAVES = tuple(round(0.1 * k, 1) for k in range(1, 11))  # every 10% of the SFT steps
PATIENCE = 2
RATES = (1.0, 1.5, 2.0)  # examples/arm-callback.yml's line search


def run_early_stop(run: Run, rank: int) -> None:
    """The ``early-stop`` row (see the module docstring); ``rank``: the ARM rank."""
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
        stopped = trace.stop_reason is not None and not trace.failed
        at = SAVES[len(trace.records) - 1] if trace.records else SAVES[-1]
        trained = max(1, round(at * asked)) if stopped else asked
        selected = {
            "stopped": stopped, "stop save": f"c{round(at * 100)}" if stopped else None,
            "steps trained": trained, "steps asked": asked,
            "fraction saved": round(1 - trained / asked, 4), "kept step": trace.kept_step,
            "kept": "origin" if trace.kept_step == 0 else read[trace.kept_step - 1],
            "saves read": read, "patience": PATIENCE, "rates": list(RATES),
            "val per step": [start] + [r["val_loss"] for r in trace.records],
            "learning rates": [r["learning_rate"] for r in trace.records]}
        where = f"stopped at {selected['stop save']}" if stopped else "never stopped"
        run.log(f"[seed {run.seed}] early-stop: {where}, {trained}/{asked} SFT steps, "
                f"kept {selected['kept']}")
        run.test(EARLY_STOP, trace.kept_weights, selected, trace.kept_loss)
        run.diagnostics[EARLY_STOP] = selected


__all__ = ["EARLY_STOP", "PATIENCE", "SAVES", "run_early_stop"]
