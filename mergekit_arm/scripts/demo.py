"""``arm-demo-models``: build the tiny quick-start models (offline, CPU, under a minute)."""

from __future__ import annotations

import time

import click

from mergekit_arm.scripts.console import version_option


@version_option
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("root", type=click.Path(file_okay=False, writable=True))
@click.option("--arch", type=click.Choice(["llama", "qwen3"]), default="llama", show_default=True,
              help="Architecture of the tiny models.")
@click.option("--sft-steps", type=click.IntRange(min=1), default=40, show_default=True,
              help="Steps of the math fine-tune (checkpoints every 10 steps); models of steps "
                   "10, 20 and this one are published under ROOT/models.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of init and data order.")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="Torch threads for training (0: torch's default). One is fastest for "
                   "these tiny models, above all on a busy machine.")
def main(root: str, arch: str, sft_steps: int, seed: int, threads: int) -> None:
    """Create ROOT/models/base, the Trainer run ROOT/sft-run/checkpoint-* and its models
    ROOT/models/sft-step-* (each reused when already complete)."""
    from mergekit_arm.demo import make_demo

    start = time.perf_counter()
    paths = make_demo(root, arch=arch, sft_steps=sft_steps, seed=seed,
                      num_threads=threads or None)
    for name, path in paths.items():
        click.echo(f"{name}: {path.resolve()}")
    click.echo(f"done in {time.perf_counter() - start:.1f} s", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
