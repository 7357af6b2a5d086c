"""Statistics files a user already computed, given to a stream as a model entry's
``activations`` (``origin: {model: PATH, activations: FILE}``, ``checkpoints[i].activations``).

Such a model is not recalibrated. Before anything is loaded or calibrated the file is
checked against the model, as the merge checks it (:func:`~mergekit_arm.calibration.check_statistics`:
an entry for every linear weight, input sizes, the weights' probe values), and against
the stream's ``calibration`` section: the same calibration tokens (the fingerprint of the
token ids the stream feeds this model) and at least ``calibration.rank`` directions.
Once the model is loaded its fingerprint (every parameter's probe) must be the file's.
"""

from __future__ import annotations

import re
from pathlib import Path

from mergekit_arm.calibration.options import CalibrationSettings
from mergekit_arm.errors import ArmConfigError, StatisticsError
from mergekit_arm.statistics import ActivationStatistics

_INNER_FIX = re.compile(r"[.;] [Rr]un `arm-calibrate .*$", re.DOTALL)
"""The fix a model check suggests (a generic command; the merge's `verify_statistics`),
replaced by the stream's own."""


NEW_FILE = "NEW_FILE.safetensors"
"""Where a fix writes when the given file is another model's (not over the user's file)."""


def calibrate_command(model: str, file: str, cal: CalibrationSettings,
                      tokenizer: str | None = None) -> str:
    """The ``arm-calibrate`` command that writes ``file`` with the stream's settings ``cal``
    (run in float32 as the stream calibrates, so the file equals the stream's own)."""
    parts = ["arm-calibrate", model, file]
    if cal.data is not None:
        parts += ["--data", cal.data]
    parts += ["--samples", str(cal.samples), "--max-length", str(cal.max_length),
              "--rank", str(cal.rank)]
    defaults = CalibrationSettings()
    if cal.text_mode != defaults.text_mode:
        parts += ["--text-mode", cal.text_mode]
    if cal.batch_size != defaults.batch_size:
        parts += ["--batch-size", str(cal.batch_size)]
    if cal.mode != defaults.mode:
        parts += ["--mode", cal.mode]
    if tokenizer is not None:
        parts += ["--tokenizer", tokenizer]
    parts += ["--dtype", "float32"]
    return " ".join(parts)


def check_given_file(key: str, model: str, file: str, cal: CalibrationSettings,
                     tokens_fingerprint: str, *, tokenizer: str | None = None,
                     trust_remote_code: bool = False) -> ActivationStatistics:
    """The statistics file ``file`` that config entry ``key`` gives for ``model``, checked
    against the model and the stream's calibration settings ``cal`` (whose tokens, as fed
    to this model, have fingerprint ``tokens_fingerprint``); raises naming the mismatch."""
    from mergekit_arm.calibration import check_statistics

    where = f"`{key}.activations`"
    fix = calibrate_command(model, file, cal, tokenizer)
    if not Path(file).is_file():
        raise ArmConfigError(
            f"{where}: statistics file {file} does not exist. Create it with `{fix}`, or "
            "remove `activations` to let the stream calibrate the model")
    try:
        stats = check_statistics(file, model, trust_remote_code=trust_remote_code)
    except StatisticsError as error:
        raise StatisticsError(
            f"{where}: {file} is not the statistics of {model}: "
            f"{_INNER_FIX.sub('', str(error))}. Run `{calibrate_command(model, NEW_FILE, cal, tokenizer)}` "
            f"and point `{key}.activations` at the new file (or remove `activations` to let "
            "the stream calibrate the model)") from None
    stored = int(stats.metadata.get("rank", "0") or 0)
    if stored < cal.rank:
        raise StatisticsError(
            f"{where}: {file} stores {stored} directions per input (rank {stored}) but the "
            f"stream's `calibration.rank` is {cal.rank}. Re-run `{fix}`, or lower "
            f"`calibration.rank` (and `arm.rank`) to at most {stored}")
    if stats.calibration_fingerprint != tokens_fingerprint:
        meta = stats.metadata
        raise StatisticsError(
            f"{where}: {file} was computed on other calibration tokens than the stream's "
            f"`calibration` section gives {model} (the file: {meta.get('num_samples', '?')} "
            f"samples of {meta.get('calibration_source', '?')}, max_length "
            f"{meta.get('max_length', '?')}; the stream: {cal.samples} samples of "
            f"{cal.data or 'the mergekit-arm default corpus'}, max_length {cal.max_length}, "
            f"text_mode {cal.text_mode}, with the stream's tokenizer). The statistics a step "
            "combines must come from the same tokens. Re-run `" + fix + "`, set the stream's "
            "`calibration` section to the file's settings, or remove `activations` to let the "
            "stream calibrate the model")
    return stats


def fingerprint_mismatch(key: str, model: str, file: str, cal: CalibrationSettings,
                         tokenizer: str | None = None, probe_dtype: str = "float32",
                         model_dtype: str = "float32") -> StatisticsError:
    """The error for a loaded model whose parameters' fingerprint is not the file's
    (``probe_dtype``: the dtype the file's pass ran in; ``model_dtype``: the checkpoint's)."""
    if probe_dtype != "float32" and probe_dtype != model_dtype:
        why = (f"the file was computed in {probe_dtype} from a {model_dtype} checkpoint, so "
               "the weights it recorded are rounded")
    else:
        why = ("the linear weights' probes matched, so another parameter, e.g. a norm or an "
               "embedding, changed")
    return StatisticsError(
        f"`{key}.activations`: {file} was computed from a model whose parameters differ from "
        f"{model} as loaded (the model fingerprint over every parameter's probe values "
        f"differs: {why}). Run `{calibrate_command(model, NEW_FILE, cal, tokenizer)}` and point "
        f"`{key}.activations` at the new file, or remove `activations` to let the stream "
        "calibrate the model")


__all__ = ["calibrate_command", "check_given_file", "fingerprint_mismatch"]
