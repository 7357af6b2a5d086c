"""``arm-stream CONFIG OUT``: Streaming Merging, ARM merges iterated into a trajectory."""

from __future__ import annotations

import click

from mergekit_arm.scripts.console import configure_logging, exit_on_failure, version_option


@version_option
@click.command("arm-stream", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--restart", is_flag=True, default=False,
              help="Discard a previous (possibly different) run in OUT and start over.")
@click.option("--watch", "watch", type=click.Path(exists=True, file_okay=False), default=None,
              metavar="DIR",
              help="Follow DIR, a training run's output folder: merge each complete "
                   "checkpoint-* folder as it appears (mode watch).")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log every phase.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bars.")
def main(config: str, out: str, restart: bool, watch: str | None, verbose: bool, quiet: bool) -> None:
    """Run the stream described by CONFIG (YAML) and write the final model to OUT/model.

    Re-running the same command after an interruption continues after the last
    completed step. OUT also receives trajectory.jsonl, trajectory.png and, per step,
    steps/step-K.yml (a mergekit config that replays that step).
    """
    configure_logging(verbose, quiet)
    from mergekit_arm.stream import run_stream

    with exit_on_failure("arm-stream", "run the same command again to resume after the "
                                       "last completed step"):
        result = run_stream(config, out, restart=restart, watch=watch, progress=not quiet)
    click.echo(summary_line(result))
    if result.status == "stopped":
        click.echo(f"arm-stream: stopped early: {result.stop_reason}", err=True)


def summary_line(result) -> str:
    """The last line of a run: status, steps, the kept step, the held-out losses, and why a
    stream that finished early ended (patience ran out, the watch went idle)."""
    loss = result.final_loss
    kept = "the start model" if result.kept_step == 0 else f"step {result.kept_step}"
    summary = f"{result.status} after {result.steps} step(s): {result.model} is {kept}"
    if loss is not None and result.start_loss is not None:
        summary += f" (held-out loss {result.start_loss:.4f} -> {loss:.4f})"
    if result.status == "finished" and result.stop_reason:
        summary += f"; {result.stop_reason}"
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
