"""``python -m mergekit_arm.demo.report ROOT``: what the quick start produced, in numbers.

Loads the merged model with ``AutoModelForCausalLM.from_pretrained`` (the proof that
``mergekit-yaml`` wrote a usable model) and prints the mean token loss of every demo
model on the held-out math texts (texts the demo fine-tune never saw), with the package's
one held-out loss (:mod:`mergekit_arm.evaluation`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--merged", default="merged", show_default=True, help="ARM merge under ROOT.")
@click.option("--baseline", default="expo", show_default=True,
              help="Same step with rotation_strength 0 under ROOT (skipped if absent).")
def main(root: str, merged: str, baseline: str) -> None:
    """Print held-out loss of the demo models, of ROOT/MERGED and of ROOT/BASELINE."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo.corpus import demo_heldout_texts
    from mergekit_arm.demo.evaluate import saved_model_loss
    from mergekit_arm.demo.runtime import quiet_runtime

    root_path = Path(root)
    merged_path = root_path / merged
    if not (merged_path / "config.json").is_file():
        click.echo(f"error: {merged_path} is not a finished model folder", err=True)
        sys.exit(2)
    with quiet_runtime():
        AutoModelForCausalLM.from_pretrained(merged_path)  # loads, or raises
    texts = demo_heldout_texts()
    rows = [(p.name, p) for p in sorted((root_path / "models").iterdir()) if p.is_dir()
            and not p.name.startswith(".")]
    if (root_path / baseline / "config.json").is_file():
        rows.append((f"{baseline} (no rotation)", root_path / baseline))
    rows.append((f"{merged} (ARM)", merged_path))
    click.echo(f"held-out loss on {len(texts)} math texts the demo SFT never saw:")
    for label, path in rows:
        click.echo(f"  {label:<24} {saved_model_loss(path, texts):.4f}")
    click.echo(
        "(tiny random models and 40 SFT steps: this shows the pipeline works end to end; "
        "it is not evidence about ARM's quality, see benchmarks/)"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
