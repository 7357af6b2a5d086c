"""``arm-verify OUT_DIR``: check that a finished model folder is complete and readable."""

from __future__ import annotations

import sys

import click

from mergekit_arm.scripts.console import version_option

KIND_NAMES = {"merge": "MergeKit merge", "trainer": "Trainer checkpoint",
              "adapter": "PEFT adapter", "model": "saved model"}


@version_option
@click.command("arm-verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path())
@click.option("--no-finite", is_flag=True, help="Skip the NaN/Inf check of every tensor.")
@click.option("--no-tokenizer", is_flag=True,
              help="Accept a model folder without a tokenizer (a model kept without one).")
@click.option("--no-card", is_flag=True,
              help="Accept a MergeKit merge without its model card (--no-write-model-card).")
def main(out_dir: str, no_finite: bool, no_tokenizer: bool, no_card: bool) -> None:
    """Re-read OUT_DIR (written by mergekit-yaml, arm-stream or a Trainer) like a loader would.

    Every JSON file parses, every tensor of every weight file is readable and finite, the
    index is complete, no partial shard or temporary file is left, and the tokenizer
    loads. By kind: a MergeKit merge has its card (README.md, mergekit_config.yml) and a
    tokenizer; a saved model has a tokenizer; a Trainer checkpoint has a readable training
    state (optimizer.pt, scheduler.pt, rng_state*.pth, training_args.bin are not weights)
    and trainer_state.json. Prints one line per problem and exits 1, or prints `ok` and
    exits 0.
    """
    from mergekit_arm.checks import verify_output

    report = verify_output(out_dir, finite=not no_finite, tokenizer=not no_tokenizer,
                           card=not no_card)
    if not report.ok:
        for problem in report.problems:
            click.echo(f"arm-verify: {problem}", err=True)
        click.echo(f"arm-verify: {report.folder} is NOT a complete model "
                   f"({len(report.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(f"ok: {report.folder} ({KIND_NAMES[report.kind]}, {len(report.files)} files, "
               f"{report.tensors} tensors)")


if __name__ == "__main__":  # pragma: no cover
    main()
