"""``arm-choose CONFIG OUT``: build several recipes from the same checkpoints, keep the one
with the lowest held-out loss."""

from __future__ import annotations

import click

from mergekit_arm.scripts.console import configure_logging, exit_on_failure, version_option


@version_option
@click.command("arm-choose", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--restart", is_flag=True, default=False,
              help="Discard the builds in OUT (streams included) and build every candidate again.")
@click.option("--refuse-changed-inputs", is_flag=True, default=False,
              help="Stop when a build's input checkpoints were rewritten since it was made "
                   "(default: build it again).")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log every phase.")
@click.option("-q", "--quiet", is_flag=True, default=False,
              help="No progress bars and no per-candidate lines.")
def main(config: str, out: str, restart: bool, refuse_changed_inputs: bool, verbose: bool,
         quiet: bool) -> None:
    """Build every candidate of CONFIG (YAML), score each on its `validation` texts and write
    the lowest-loss one to OUT/model (with `guards:`, the lowest among the candidates that
    stay within every guard set's `max_regression`; none within: exit status 2).

    OUT also receives candidates/NAME/ (each build), leaderboard.md and leaderboard.json.
    Re-running continues: unchanged builds are reused and an interrupted stream resumes;
    a build whose input checkpoints were rewritten since is made again (leaderboard:
    `rebuilt: inputs changed`), or refused with --refuse-changed-inputs.
    """
    configure_logging(verbose, quiet, progress_loggers=("mergekit_arm.choose",))
    from mergekit_arm.choose import run_choose

    with exit_on_failure("arm-choose", "run the same command again to continue (finished "
                                       "builds are reused)"):
        result = run_choose(config, out, restart=restart, progress=not quiet,
                            refuse_changed_inputs=refuse_changed_inputs)
    for row in sorted(result.rows, key=lambda row: (bool(row.excluded), row.val_loss)):
        mark = "  <- chosen" if row.chosen else ""
        how = f", {row.build}" if row.kind != "model" else ""
        guards = "".join(f"  {name} {loss:.4f}" for name, loss in row.guard_losses.items())
        excluded = f"  excluded: {'; '.join(row.excluded)}" if row.excluded else ""
        click.echo(f"{row.val_loss:.4f}  {row.name} ({row.kind}{how}){guards}{mark}{excluded}")
    click.echo(f"{result.model} is candidate {result.chosen} "
               f"(leaderboard: {result.out / 'leaderboard.md'})")
    if any(row.tuned_on_validation for row in result.rows):
        click.echo("arm-choose: note: a stream tuned on these held-out texts, so its loss is "
                   "optimistic (see leaderboard.md)", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
