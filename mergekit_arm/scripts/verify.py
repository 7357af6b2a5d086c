"""``arm-verify OUT_DIR``: check that a finished model folder is complete and readable."""

from __future__ import annotations

import sys

import click


@click.command("arm-verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path())
@click.option("--no-finite", is_flag=True, help="Skip the NaN/Inf check of every tensor.")
def main(out_dir: str, no_finite: bool) -> None:
    """Re-read OUT_DIR (written by mergekit-yaml or arm-stream) like a loader would.

    Every JSON file parses, every tensor of every weight file is readable and finite, the
    index is complete, no partial shard or temporary file is left, and the tokenizer
    loads. Prints one line per bad file and exits 1, or prints `ok` and exits 0.
    """
    from mergekit_arm.checks import verify_output

    report = verify_output(out_dir, finite=not no_finite)
    if not report.ok:
        for problem in report.problems:
            click.echo(f"arm-verify: {problem}", err=True)
        click.echo(f"arm-verify: {report.folder} is NOT a complete model "
                   f"({len(report.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(f"ok: {report.folder} ({len(report.files)} files, {report.tensors} tensors)")


if __name__ == "__main__":  # pragma: no cover
    main()
