"""``arm-calibrate MODEL OUT``: activation statistics of a model, for ``merge_method: arm``."""

from __future__ import annotations

import logging
import sys

import click

from mergekit_arm.errors import ArmError


@click.command("arm-calibrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(exists=True), default=None,
              help="Calibration text: .txt, .jsonl, .json, .parquet or a saved dataset folder. "
                   "Default: the corpus shipped with mergekit-arm.")
@click.option("--samples", type=click.IntRange(min=1), default=128, show_default=True,
              help="Number of texts to use.")
@click.option("--max-length", type=click.IntRange(min=2), default=512, show_default=True,
              help="Tokens per text (longer texts are truncated).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--rank", type=click.IntRange(min=1), default=64, show_default=True,
              help="Eigenvectors stored per linear input (the most a merge can use).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default="auto", show_default=True, help="dtype to run the model in.")
@click.option("--text-mode", type=click.Choice(["paragraph", "line"]), default="paragraph",
              show_default=True, help="For .txt data: one sample per paragraph or per line.")
@click.option("--tokenizer", type=click.Path(file_okay=False), default=None,
              help="Tokenizer folder, when MODEL has none (default: MODEL).")
@click.option("--trust-remote-code", is_flag=True, default=False)
@click.option("--mode", type=click.Choice(["auto", "all-at-once", "layer-sequential"]),
              default="auto", show_default=True,
              help="all-at-once: one forward of the whole model per batch; layer-sequential: "
                   "one decoder layer on the device at a time, layers read lazily from disk "
                   "(models larger than the GPU or RAM); auto: layer-sequential from 100M "
                   "parameters or when all-at-once would not fit.")
@click.option("--check", is_flag=True, default=False,
              help="Do not calibrate: validate the existing statistics file OUT and print its metadata.")
@click.option("-v", "--verbose", is_flag=True, default=False)
@click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bar.")
def main(model, out, data, samples, max_length, batch_size, rank, device, dtype, text_mode,
         tokenizer, trust_remote_code, mode, check, verbose, quiet) -> None:
    """Compute activation statistics of MODEL (a Hugging Face model folder) into OUT.

    OUT is a safetensors file holding, per linear layer, the principal subspace of
    its inputs on the calibration text. It is written atomically.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    try:
        if check:
            from mergekit_arm.statistics import load_statistics, metadata_summary

            stats = load_statistics(out)
            stats.validate_all()
            for key, value in metadata_summary(stats).items():
                click.echo(f"{key}: {value}")
            click.echo(f"weights: {len(stats)}  ok")
            return
        from mergekit_arm.calibrate import CalibrationOptions, calibrate

        options = CalibrationOptions(
            data=data, samples=samples, max_length=max_length, batch_size=batch_size, rank=rank,
            device=device, dtype=dtype, text_mode=text_mode, tokenizer=tokenizer,
            trust_remote_code=trust_remote_code, mode=mode,
        )
        result = calibrate(model, out, options, progress=not quiet)
    except ArmError as error:
        click.echo(f"arm-calibrate: error: {error}", err=True)
        sys.exit(2)
    click.echo(
        f"wrote {result.path}: {result.num_samples} samples, {result.num_tokens} tokens, "
        f"{result.mode} (forward {result.seconds_forward:.1f}s, eigendecomposition {result.seconds_eigen:.1f}s)"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
