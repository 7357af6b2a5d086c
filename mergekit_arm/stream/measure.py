"""What a stream measures on text: activation statistics (calibration) and held-out batches.

Statistics of the inputs (origin, checkpoints) are cached under
``OUT/.arm-stream/stats/cache/<key>.safetensors``, keyed by the model's fingerprint, the
calibration tokens and the settings, so a resumed or restarted run reuses them. A model
given with ``activations`` (:mod:`~mergekit_arm.stream.given`) is not calibrated: once its
file is checked, any request for the statistics of a model with its fingerprint (the model
itself, or the current model of step 1 when it starts there) copies that file.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from mergekit_arm._io import atomic_file
from mergekit_arm.calibration import (
    CalibrationOptions,
    TextRole,
    calibrate,
    calibration_fingerprint,
    load_calibration_texts,
    model_fingerprint,
    tokenize_texts,
)
from mergekit_arm.calibration.limits import position_limit
from mergekit_arm.errors import ArmConfigError, StatisticsError
from mergekit_arm.evaluation import LossBatch
from mergekit_arm.heldout import heldout_batches
from mergekit_arm.models import load_model_config
from mergekit_arm.statistics import clear_cache, load_statistics
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.given import check_given_file, fingerprint_mismatch
from mergekit_arm.stream.inputs import saved_dtype

logger = logging.getLogger("mergekit_arm.stream")

CALIBRATION_ROLE = TextRole("calibration data", "`calibration.data` in the stream config")
VALIDATION_ROLE = TextRole("validation data", "`validation.data` in the stream config")


class StatisticsStore:
    """Computes (or reuses) statistics files, all on the stream's calibration tokens."""

    def __init__(self, config: StreamConfig, tokenizer: Any, device: torch.device,
                 cache_dir: Path, progress: bool) -> None:
        cal = config.calibration
        self.rank = cal.rank
        self.cache_dir = cache_dir
        self.tokenizer = tokenizer
        self.progress = progress
        self.texts = load_calibration_texts(cal.data, cal.samples, cal.text_mode, CALIBRATION_ROLE)
        tokens = tokenize_texts(tokenizer, self.texts, cal.max_length)
        if not tokens:
            raise ArmConfigError("`calibration.data` yields no tokens with this tokenizer")
        self.fingerprint = calibration_fingerprint(tokens)
        self.max_length = cal.max_length
        self._cut: dict[int, str] = {}  # position limit -> fingerprint of the cut tokens
        self.options = CalibrationOptions(
            **cal.model_dump(), device=str(device), dtype="float32",
            trust_remote_code=config.trust_remote_code,
        )
        self.cache_key = f"rank={cal.rank}|batch={cal.batch_size}|mode={cal.mode}|float32"
        self.settings = cal
        self.tokenizer_path = config.tokenizer
        self.trust_remote_code = config.trust_remote_code
        self._checked: dict[str, tuple[str, str, str, str]] = {}  # key -> (model, file,
        # model fingerprint, dtype of its pass)
        self._given: dict[str, tuple[Path, str]] = {}  # model fingerprint -> (file, key)

    def check_given(self, key: str, model: str, file: str) -> None:
        """Check the statistics ``file`` config entry ``key`` gives for ``model`` (a local
        folder) against it and the calibration settings, before anything is loaded."""
        tokens = self.fingerprint_for_config(load_model_config(Path(model), self.trust_remote_code))
        stats = check_given_file(key, model, file, self.settings, tokens,
                                 tokenizer=self.tokenizer_path,
                                 trust_remote_code=self.trust_remote_code)
        self._checked[key] = (model, file, stats.model_fingerprint,
                              stats.metadata.get("probe_dtype", "float32"))

    def use_given(self, key: str, module: torch.nn.Module) -> None:
        """After loading the model of entry ``key``: its statistics come from the checked
        file (when ``key`` gave one), whose model fingerprint must be the module's."""
        if key not in self._checked:
            return
        model, file, fingerprint, pass_dtype = self._checked[key]
        if model_fingerprint(module) != fingerprint:
            raise fingerprint_mismatch(key, model, file, self.settings, self.tokenizer_path,
                                       pass_dtype,
                                       str(saved_dtype(Path(model))).removeprefix("torch."))
        self._given[fingerprint] = (Path(file), key)

    def fingerprint_for(self, module: torch.nn.Module) -> str:
        """Fingerprint of the tokens :func:`calibrate` feeds ``module``: cut at its positions
        when its config states fewer than ``calibration.max_length``."""
        return self.fingerprint_for_config(module.config)

    def fingerprint_for_config(self, model_config: Any) -> str:
        """:meth:`fingerprint_for` a model of config ``model_config``."""
        stated = position_limit(model_config)
        if stated is None or stated[0] >= self.max_length:
            return self.fingerprint
        if stated[0] not in self._cut:
            tokens = tokenize_texts(self.tokenizer, self.texts, stated[0])
            self._cut[stated[0]] = calibration_fingerprint(tokens)
        return self._cut[stated[0]]

    def compute(self, module: torch.nn.Module, path: Path, label: str,
                description: str | None = None) -> Path:
        """``path``, (re)computed unless it already holds this model's statistics.

        ``label`` is stored in the file as the model's name; ``description`` (default:
        the label) is what the log says is being calibrated.
        """
        fingerprint = model_fingerprint(module)
        given = self._given.get(fingerprint)
        if given is not None:  # the user's file, checked: copied, not recalibrated
            logger.info("statistics of %s: `%s.activations` %s (not recalibrated)",
                        description or label, given[1], given[0])
            if path != given[0]:
                with atomic_file(path) as tmp:
                    shutil.copyfile(given[0], tmp)
            return path
        if path.is_file():
            try:
                existing = load_statistics(path)
                if (
                    existing.model_fingerprint == fingerprint
                    and existing.calibration_fingerprint == self.fingerprint_for(module)
                    and existing.metadata.get("rank") == str(self.rank)
                ):
                    logger.debug("reusing statistics %s", path)
                    return path
            except StatisticsError:
                pass
        logger.info("calibrating %s", description or label)
        calibrate(module, path, self.options, tokenizer=self.tokenizer, texts=self.texts,
                  model_label=label, progress=self.progress)
        clear_cache()
        return path

    def cached(self, module: torch.nn.Module, label: str, description: str | None = None) -> Path:
        """Statistics of an input model, in the content-keyed cache."""
        key = hashlib.sha256(
            f"{model_fingerprint(module)}|{self.fingerprint_for(module)}|{self.cache_key}".encode()
        ).hexdigest()[:32]
        return self.compute(module, self.cache_dir / f"{key}.safetensors", label, description)


def validation_batches(config: StreamConfig, tokenizer: Any, device: torch.device,
                       section: str = "validation", model_config: Any = None) -> list[LossBatch] | None:
    """The held-out batches of ``config.validation`` (or of the ``selection`` section;
    None without it), cut at the positions ``model_config`` states."""
    held_out = getattr(config, section)
    if held_out is None:
        return None
    return heldout_batches(held_out, section, tokenizer, device, config.calibration.max_length,
                           VALIDATION_ROLE, model_config)


__all__ = ["StatisticsStore", "validation_batches"]
