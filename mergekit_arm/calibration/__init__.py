"""Calibration: principal subspaces of every linear layer's inputs, written as a statistics file.

Modules, one job each: :mod:`.options` (the one typed set of options), :mod:`.data`
(texts, tokens, batches), :mod:`.moments` (second-moment accumulation), :mod:`.eigen`
(eigendecomposition), :mod:`.layout` (what a pass needs to know about the model),
:mod:`.full_pass` (all-at-once), :mod:`.lazy` and :mod:`.layer_pass` (layer-sequential),
:mod:`.mode` (the mode choice) and :mod:`.api` (:func:`calibrate`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Public name -> submodule defining it, imported on first access: importing
# ``mergekit_arm.calibration.options`` (arm-calibrate's flags, the stream config) must not
# import torch and transformers through this package (``arm-calibrate --help``: 3 s -> 0.2 s).
_LAZY: dict[str, str] = {
    **dict.fromkeys(("CalibrationResult", "calibrate", "check_statistics",
                     "collect_statistics"), "api"),
    **dict.fromkeys(("TextRole", "TokenBatches", "calibration_fingerprint",
                     "default_calibration_path", "iter_batches", "load_calibration_texts",
                     "tokenize_texts"), "data"),
    "principal_subspace": "eigen",
    "collect_statistics_layerwise": "layer_pass",
    **dict.fromkeys(("decoder_stack", "linear_modules", "model_fingerprint"), "layout"),
    "load_lazy_causal_lm": "lazy",
    "choose_mode": "mode",
    **dict.fromkeys(("CalibrationMode", "CalibrationOptions", "CalibrationSettings", "TextMode",
                     "add_calibration_options"), "options"),
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mergekit_arm.calibration.api import (
        CalibrationResult,
        calibrate,
        check_statistics,
        collect_statistics,
    )
    from mergekit_arm.calibration.data import (
        TextRole,
        TokenBatches,
        calibration_fingerprint,
        default_calibration_path,
        iter_batches,
        load_calibration_texts,
        tokenize_texts,
    )
    from mergekit_arm.calibration.eigen import principal_subspace
    from mergekit_arm.calibration.layer_pass import collect_statistics_layerwise
    from mergekit_arm.calibration.layout import decoder_stack, linear_modules, model_fingerprint
    from mergekit_arm.calibration.lazy import load_lazy_causal_lm
    from mergekit_arm.calibration.mode import choose_mode
    from mergekit_arm.calibration.options import (
        CalibrationMode,
        CalibrationOptions,
        CalibrationSettings,
        TextMode,
        add_calibration_options,
    )


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mergekit_arm.calibration' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"mergekit_arm.calibration.{module}"), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


__all__ = [
    "CalibrationMode",
    "CalibrationOptions",
    "CalibrationResult",
    "CalibrationSettings",
    "TextMode",
    "add_calibration_options",
    "calibrate",
    "calibration_fingerprint",
    "check_statistics",
    "choose_mode",
    "collect_statistics",
    "collect_statistics_layerwise",
    "decoder_stack",
    "default_calibration_path",
    "TokenBatches",
    "iter_batches",
    "linear_modules",
    "TextRole",
    "load_calibration_texts",
    "load_lazy_causal_lm",
    "model_fingerprint",
    "principal_subspace",
    "tokenize_texts",
]
