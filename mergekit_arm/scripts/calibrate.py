"""``arm-calibrate MODEL OUT``: activation statistics of a model, for ``merge_method: arm``.

The calibration options are derived from :class:`~mergekit_arm.calibration.CalibrationOptions`
(:func:`~mergekit_arm.calibration.add_calibration_options`); this module only adds the
arguments, ``--check`` and the logging flags.
"""

from __future__ import annotations

import logging

import click

from mergekit_arm.calibration.options import CalibrationOptions, add_calibration_options
from mergekit_arm.scripts.console import exit_on_failure, version_option


@version_option
@click.command("arm-calibrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@add_calibration_options
@click.option("--check", is_flag=True, default=False,
              help="Do not calibrate: validate the existing statistics file OUT, check that it was "
                   "computed from MODEL (shapes, weight probes) and print its metadata.")
@click.option("-v", "--verbose", is_flag=True, default=False)
@click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bar.")
def main(model: str, out: str, calibration_options: CalibrationOptions, check: bool,
         verbose: bool, quiet: bool) -> None:
    """Compute activation statistics of MODEL (a Hugging Face model folder) into OUT.

    OUT is a safetensors file holding, per linear layer, the principal subspace of
    its inputs on the calibration text. It is written atomically.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    from mergekit_arm.quiet import quiet_transformers  # no per-file loading bars

    with exit_on_failure("arm-calibrate", "nothing was written (OUT is written only when "
                                          "complete); run the same command again"), \
            quiet_transformers():
        if check:
            from mergekit_arm.calibration import check_statistics
            from mergekit_arm.statistics import metadata_summary

            stats = check_statistics(out, model,
                                     trust_remote_code=calibration_options.trust_remote_code)
            for key, value in metadata_summary(stats).items():
                click.echo(f"{key}: {value}")
            click.echo(f"weights: {len(stats)}  ok (computed from {model})")
            return
        from mergekit_arm.calibration import calibrate

        result = calibrate(model, out, calibration_options, progress=not quiet)
    click.echo(
        f"wrote {result.path}: {result.num_samples} samples, {result.num_tokens} tokens, "
        f"{result.mode} (forward {result.seconds_forward:.1f}s, eigendecomposition {result.seconds_eigen:.1f}s)"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
