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


def _loss_points(records: Sequence[Record]) -> tuple[list[int], list[float]]:
    steps, losses = [], []
    if records and records[0].get("val_loss_before") is not None:
        steps.append(records[0]["step"] - 1)
        losses.append(records[0]["val_loss_before"])
    for record in records:
        if record.get("accepted") and record.get("val_loss") is not None:
            steps.append(record["step"])
            losses.append(record["val_loss"])
    return steps, losses


def plot_trajectory(path: Path, records: Sequence[Record], title: str = "arm-stream") -> None:
    """Held-out loss (with every line-search try) and mean/max principal angle vs step."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    loss_steps, losses = _loss_points(records)
    has_loss = bool(losses)
    rows = 2 if has_loss else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 3.2 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if has_loss:
        ax = axes[0]
        ax.plot(loss_steps, losses, "o-", color="tab:blue", label="held-out loss (kept)")
        tries = [
            (record["step"], t["val_loss"], t["learning_rate"])
            for record in records
            for t in (record.get("line_search") or [])
            if t.get("val_loss") is not None
        ]
        if tries:
            ax.scatter([s for s, _, _ in tries], [v for _, v, _ in tries], s=14, color="0.6",
                       zorder=1, label="line-search tries")
        failed = [r["step"] for r in records if not r.get("accepted")]
        for step in failed:
            ax.axvline(step, color="tab:red", linestyle=":", label="stopped (non-finite)")
        ax.set_ylabel("held-out loss (nats/token)")
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    angle_steps = [r["step"] for r in records if r.get("angle_mean_deg") is not None]
    ax.plot(angle_steps, [r["angle_mean_deg"] for r in records if r.get("angle_mean_deg") is not None],
            "s-", color="tab:orange", label="mean principal angle")
    ax.plot(angle_steps, [r["angle_max_deg"] for r in records if r.get("angle_mean_deg") is not None],
            "^--", color="tab:orange", alpha=0.5, label="max principal angle")
    ax.set_ylabel("angle from -> current (deg)")
    ax.set_xlabel("step")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(title)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "" if value is None else format(value, spec)


def trajectory_table(records: Sequence[Record]) -> str:
    """A markdown table of the steps."""
    lines = [
        "| step | learning rate | held-out loss | mean angle (deg) | max angle (deg) | to |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        to = ", ".join(Path(t["model"]).name for t in r.get("to", []))
        loss = _fmt(r.get("val_loss")) if r.get("accepted") else "non-finite: stopped"
        lines.append(
            f"| {r['step']} | {_fmt(r.get('learning_rate'), '.4g')} | {loss} | "
            f"{_fmt(r.get('angle_mean_deg'), '.2f')} | {_fmt(r.get('angle_max_deg'), '.2f')} | {to} |"
        )
    return "\n".join(lines)


def model_card(
    config: StreamConfig,
    records: Sequence[Record],
    status: str,
    stop_reason: str | None,
    start_loss: float | None,
) -> str:
    """README.md of the final model: what was merged, how, and the trajectory."""
    accepted = [r for r in records if r.get("accepted")]
    header = {
        "library_name": "transformers",
        "tags": ["merge", "mergekit", "mergekit-arm", "arm", "streaming-merging"],
    }
    mode_text = {
        "fixed": "a fixed set of early SFT checkpoints (from = origin at every step)",
        "checkpoints": "a stream of checkpoints (step t: from = c_{t-1}, to = c_t)",
        "watch": "checkpoints of a training run, merged as they appeared (step t: from = "
        "c_{t-1}, to = c_t)",
    }[config.mode]
    losses = ""
    if start_loss is not None and accepted and accepted[-1].get("val_loss") is not None:
        losses = (
            f"Held-out loss went from {start_loss:.4f} (start) to "
            f"{accepted[-1]['val_loss']:.4f} after step {accepted[-1]['step']}.\n\n"
        )
    stopped = ""
    if status == "stopped":
        stopped = f"**The stream stopped early:** {stop_reason} This model is the last good step.\n\n"
    config_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
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
        f"{stopped}{losses}"
        "## Trajectory\n\n"
        f"{trajectory_table(records)}\n\n"
        "![trajectory](trajectory.png)\n\n"
        "`trajectory.jsonl` holds every number, including each line-search try.\n\n"
        "## Stream configuration\n\n"
        f"```yaml\n{config_yaml}```\n"
    )


def step_yaml(
    *,
    step: int,
    learning_rate: float,
    base_model: Path,
    base_statistics: Path,
    origin: Path,
    origin_statistics: Path,
    targets: Sequence[tuple[Path, float]],
    arm_parameters: dict[str, Any],
    replayable: bool,
    output: Path | None,
    yaml_path: Path,
) -> str:
    """A mergekit config that performs step ``step`` with plain ``mergekit-yaml``."""
    models: list[dict[str, Any]] = [
        {"model": str(origin), "parameters": {"origin": True, "activations": str(origin_statistics)}}
    ]
    models += [{"model": str(path), "parameters": {"weight": weight}} for path, weight in targets]
    parameters = {"learning_rate": learning_rate, "activations": str(base_statistics)}
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
        else f"# NOT replayable as is: its base_model {base_model} was not saved\n"
        "# (set save_every: 1 in the stream config to keep every step's input model).\n"
    )
    return (
        f"# Step {step} of an arm-stream run (learning rate {learning_rate!r}).\n{note}"
        + yaml.safe_dump(config, sort_keys=False)
    )


__all__ = [
    "model_card",
    "plot_trajectory",
    "read_trajectory",
    "step_yaml",
    "trajectory_table",
    "write_trajectory",
]
