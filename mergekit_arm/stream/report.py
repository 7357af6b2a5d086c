"""What a stream writes for people: trajectory.jsonl, trajectory.png, the model card and
the per-step mergekit YAML. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mergekit_arm import __version__
from mergekit_arm._io import atomic_file, write_text_atomic
from mergekit_arm.stream.config import StreamConfig

Record = dict[str, Any]


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def write_trajectory(path: Path, records: Sequence[Record]) -> None:
    """One JSON object per line, one line per step (strict JSON: no NaN)."""
    text = "".join(json.dumps(record, allow_nan=False) + "\n" for record in records)
    write_text_atomic(path, text)


def read_trajectory(path: str | Path) -> list[Record]:
    """The records of a ``trajectory.jsonl`` file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _loss_points(records: Sequence[Record], start_loss: float | None) -> tuple[list[int], list[float]]:
    steps, losses = [], []
    if start_loss is not None:
        steps.append(0)
        losses.append(start_loss)
    for record in records:
        if record.get("accepted") and record.get("val_loss") is not None:
            steps.append(record["step"])
            losses.append(record["val_loss"])
    return steps, losses


def _kept(records: Sequence[Record]) -> int:
    """The step marked ``kept`` (0: none, the start model)."""
    return next((r["step"] for r in records if r.get("kept")), 0)


PLOT_LIMIT = 1e100
"""Values beyond this magnitude (or non-finite) are left out of the plot: matplotlib cannot
place ticks around a lone value near float64's largest (``arange: cannot compute length``)."""


def _plot_field(ax, records: Sequence[Record], field: str, style: str, **kwargs) -> None:
    """``field`` against ``step`` for the records that have a plottable value of it (the
    label counts the values left out)."""
    having = [r for r in records if r.get(field) is not None]
    shown = [r for r in having if math.isfinite(r[field]) and abs(r[field]) <= PLOT_LIMIT]
    if len(shown) < len(having) and "label" in kwargs:
        kwargs["label"] += f" ({len(having) - len(shown)} beyond {PLOT_LIMIT:.0e} not drawn)"
    ax.plot([r["step"] for r in shown], [r[field] for r in shown], style, **kwargs)


def _finish_axis(ax, ylabel: str) -> None:
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def plot_trajectory(path: Path, records: Sequence[Record], start_loss: float | None = None,
                    title: str = "arm-stream") -> None:
    """Held-out loss (every line-search try, the kept step starred), the learning rate and
    the mean/max principal angle against step."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    loss_steps, losses = _loss_points(records, start_loss)
    has_loss = bool(losses)
    rows = 3 if has_loss else 2
    fig, axes = plt.subplots(rows, 1, figsize=(7, 2.8 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if has_loss:
        ax = axes[0]
        ax.plot(loss_steps, losses, "o-", color="tab:blue", label="held-out loss (chosen rate)")
        kept = _kept(records)
        if kept in loss_steps:
            ax.plot([kept], [losses[loss_steps.index(kept)]], "*", color="tab:green",
                    markersize=16, zorder=3, label=f"kept (step {kept})")
        tries = [
            (record["step"], t["val_loss"])
            for record in records
            for t in (record.get("line_search") or [])
            if t.get("val_loss") is not None
        ]
        if tries:
            ax.scatter([s for s, _ in tries], [v for _, v in tries], s=14, color="0.6",
                       zorder=1, label="line-search tries")
        for step in [r["step"] for r in records if not r.get("accepted")]:
            ax.axvline(step, color="tab:red", linestyle=":", label="stopped (non-finite)")
        _finish_axis(ax, "held-out loss (nats/token)")
    ax = axes[-2]
    _plot_field(ax, records, "learning_rate", "d-", color="tab:purple",
                label="learning rate (chosen)")
    scheduled = [r for r in records if r.get("scheduled_learning_rate") is not None]
    if any(r["scheduled_learning_rate"] != r.get("learning_rate") for r in scheduled):
        _plot_field(ax, scheduled, "scheduled_learning_rate", ":", color="tab:purple", alpha=0.5,
                    label="scheduled rate (line search scales it)")
    _finish_axis(ax, "learning rate eta")
    ax = axes[-1]
    _plot_field(ax, records, "angle_mean_deg", "s-", color="tab:orange",
                label="mean principal angle")
    _plot_field(ax, records, "angle_max_deg", "^--", color="tab:orange", alpha=0.5,
                label="max principal angle")
    ax.set_xlabel("step")
    _finish_axis(ax, "angle from -> current (deg)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(title)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "" if value is None else format(value, spec)


def trajectory_table(records: Sequence[Record], start_loss: float | None = None) -> str:
    """A markdown table of the steps (step 0: the start model); the kept step is marked."""
    lines = [
        "| step | learning rate | held-out loss | kept | mean angle (deg) | max angle (deg) | to |",
        "|---:|---:|---:|:---:|---:|---:|---|",
    ]
    kept = _kept(records)
    if start_loss is not None:
        lines.append(f"| 0 (start) |  | {_fmt(start_loss)} | {'yes' if kept == 0 else ''} |  |  |  |")
    for r in records:
        to = ", ".join(Path(t["model"]).name for t in r.get("to", []))
        loss = _fmt(r.get("val_loss")) if r.get("accepted") else "non-finite: stopped"
        lines.append(
            f"| {r['step']} | {_fmt(r.get('learning_rate'), '.4g')} | {loss} | "
            f"{'yes' if r.get('kept') else ''} | {_fmt(r.get('angle_mean_deg'), '.2f')} | "
            f"{_fmt(r.get('angle_max_deg'), '.2f')} | {to} |"
        )
    return "\n".join(lines)


def applicable_config(config: StreamConfig) -> dict[str, Any]:
    """The config as a mapping without the keys that do not apply to this run (line-search
    keys under another schedule, the watch section outside watch mode, ...)."""
    data = config.model_dump(mode="json")
    schedule = data["schedule"]
    if config.schedule.kind != "line_search":
        schedule.pop("decay", None)
        schedule.pop("candidates", None)
    if config.schedule.decay_kind == "constant":
        schedule.pop("final_learning_rate", None)
    if config.mode != "watch":
        data.pop("watch", None)
    else:
        data.pop("steps", None)
        data.pop("checkpoints", None)
    if config.validation is None:
        data.pop("validation", None)
        data.pop("patience", None)
    data["select"] = config.select_rule()
    for key in ("start", "save_every", "tokenizer", "out_dtype", "patience", "selection",
                "blocks"):
        if data.get(key) is None:
            data.pop(key, None)
    return data


def selection_text(config: StreamConfig, records: Sequence[Record], kept: int,
                   start_loss: float | None) -> str:
    """One sentence on which step the final model is and why."""
    accepted = [r for r in records if r.get("accepted")]
    if config.select_rule() == "last":
        why = "no validation set" if config.validation is None else "select: last"
        return f"This model is the last step ({kept}) of the stream: kept the last step ({why})."
    if kept == 0:
        return ("This model is the **start model** `" + config.start_path() + "`: no step "
                f"lowered its held-out loss ({_fmt(start_loss)}), so the stream kept the start.")
    loss = next(r.get("val_loss") for r in accepted if r["step"] == kept)
    return (f"This model is step {kept} of {len(accepted)}, the lowest held-out loss "
            f"({_fmt(loss)}; start {_fmt(start_loss)}) of the trajectory (select: best).")


def model_card(
    config: StreamConfig,
    records: Sequence[Record],
    status: str,
    stop_reason: str | None,
    start_loss: float | None,
    kept: int | None = None,
) -> str:
    """README.md of the final model: what was merged, how, the kept step, the trajectory."""
    accepted = [r for r in records if r.get("accepted")]
    kept = _kept(records) if kept is None else kept
    header = {
        "library_name": "transformers",
        "tags": ["merge", "mergekit", "mergekit-arm", "arm", "streaming-merging"],
    }
    mode_text = {
        "fixed": "a fixed set of early SFT checkpoints (from = origin at every step)",
        "checkpoints": "a stream of checkpoints (step t: from = c_{t-1}, to = c_t)",
        "watch": "checkpoints of a training run, merged as they appeared (step t: from = "
        "c_{t-1}, to = c_t)",
        "toward": "checkpoints in order, each step moving the current model toward the next "
        "(step t: W <- W + eta_t R(c_t - W); eta_t = 1/t is the running average, a constant "
        "eta an EMA)",
    }[config.mode]
    if config.mode == "watch" and config.toward_legs():
        mode_text = ("checkpoints of a training run as they appeared, each step moving the "
                     "current model toward the new one (watch.legs: toward; step t: "
                     "W <- W + eta_t R(c_t - W); eta_t = 1/t is the running average)")
    stopped = ""
    if status == "stopped":
        stopped = f"**The stream stopped early:** {stop_reason}\n\n"
    elif stop_reason:
        stopped = f"The stream ended: {stop_reason}.\n\n"
    config_yaml = yaml.safe_dump(applicable_config(config), sort_keys=False)
    return (
        "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n"
        "# Streaming Merging (ARM) result\n\n"
        f"Made with mergekit-arm {__version__} `arm-stream` (ARM and Streaming Merging, "
        "[arXiv:2602.03237](https://arxiv.org/abs/2602.03237)): "
        f"{len(accepted)} ARM merge step(s) starting from `{config.start_path()}` with origin "
        f"`{config.origin}`, fed by {mode_text}. Each step re-measured the current model's "
        "activation subspaces on calibration text, rotated the displacement into them and took "
        "a step of the listed learning rate. ARM here is mergekit-arm's reconstruction of the "
        "method (the paper's equations are not public).\n\n"
        f"{selection_text(config, records, kept, start_loss)}\n\n"
        f"{stopped}"
        "## Trajectory\n\n"
        f"{trajectory_table(records, start_loss)}\n\n"
        "![trajectory](trajectory.png)\n\n"
        "`trajectory.jsonl` holds every number, including each line-search try (a copy of "
        "the stream's `OUT/trajectory.jsonl`).\n\n"
        "## Stream configuration\n\n"
        f"```yaml\n{config_yaml}```\n"
    )


def step_yaml(
    *,
    step: int,
    learning_rate: float | list[dict[str, Any]],
    base_model: Path,
    base_statistics: Path | None,
    origin: Path | None,
    origin_statistics: Path | None,
    targets: Sequence[tuple[Path, float]],
    arm_parameters: dict[str, Any],
    replayable: bool,
    output: Path | None,
    yaml_path: Path,
) -> str:
    """A mergekit config that performs step ``step`` with plain ``mergekit-yaml``.

    ``origin`` None (a toward step): no input is marked ``origin``, so the kernel's
    displacement starts at ``base_model``. ``learning_rate``: one eta, or MergeKit's
    ``[{filter, value}, ...]`` list (per-block rates).
    """
    models: list[dict[str, Any]] = [] if origin is None else [
        {"model": str(origin), "parameters": {"origin": True, "activations": str(origin_statistics)}}
    ]
    models += [{"model": str(path), "parameters": {"weight": weight}} for path, weight in targets]
    parameters: dict[str, Any] = {"learning_rate": learning_rate}
    if base_statistics is not None:
        parameters["activations"] = str(base_statistics)
    parameters.update({k: v for k, v in arm_parameters.items() if v is not None})
    config = {
        "merge_method": "arm",
        "base_model": str(base_model),
        "models": models,
        "parameters": parameters,
        "dtype": "float32",
        "out_dtype": "float32",
    }
    note = (
        f"# Replay it with: mergekit-yaml {yaml_path} OUTPUT_DIR\n"
        + (f"# The result equals {output} (float32).\n" if output is not None else "")
        if replayable
        else f"# NOT replayable as is: its base_model {base_model} (the model after step "
        f"{step - 1}) was not saved;\n# set save_every: 1 in the stream config to keep every "
        "step's input model.\n"
    )
    rate = (f"learning rate {learning_rate!r}" if not isinstance(learning_rate, list)
            else "per-block learning rates")
    return (
        f"# Step {step} of an arm-stream run ({rate}).\n{note}"
        + yaml.safe_dump(config, sort_keys=False)
    )


__all__ = [
    "applicable_config",
    "model_card",
    "plot_trajectory",
    "read_trajectory",
    "selection_text",
    "step_yaml",
    "trajectory_table",
    "write_trajectory",
]
